"""The admin tab: data import and export, label counts, training runs, model versions.

Every handler goes through ``services``, which refuses sellers on the server side; hiding
the tab from sellers is only a courtesy.
"""

import html

import gradio as gr
import pandas as pd

import db

from . import learning, services
from .adoption import ADOPT_CHECKBOX
from .auth import AccessDenied
from .context import AppContext
from .errors import USER_ERRORS, friendly
from .form import model_line
from .services import Viewer
from .ui_label_noise import build_label_noise


def versions_frame(rows: list[dict]) -> pd.DataFrame:
    columns = ["version", "status", "kind", "score", "confidence", "parent", "created", "notes"]
    frame = pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)
    frame["score"] = frame["score"].map(lambda v: None if v is None else round(float(v), SCORE_DIGITS))
    return frame


SCORE_DIGITS = 3  # what a plot or table shows of a metric: 0.712, not 0.7123456789


def version_label(order: int, version_id: str) -> str:
    """A version on a plot's axis: its place in the history and its id's tail ("#2 3f9a0c1e")."""
    return f"#{order} {version_id[-8:]}"


def score_history(rows: list[dict]) -> pd.DataFrame:
    """One row per (version, category) with the version's metric, oldest version first.

    The version is a label, not a number, so the axis shows one tick per version (not 1.00,
    1.05, ...); ``version_order`` gives the plot its order.
    """
    out = []
    for order, row in enumerate(reversed(rows), start=1):
        if row["score"] is None:
            continue
        label = version_label(order, row["version"])
        out.append(
            {"version": label, "id": row["version"], "series": "overall", "score": round(row["score"], SCORE_DIGITS)}
        )
        per_category: dict[str, list[float]] = {}
        for a in row["per_attribute"]:
            per_category.setdefault(a["category"], []).append(a["score"])
        for cat, scores in per_category.items():
            mean = round(sum(scores) / len(scores), SCORE_DIGITS)
            out.append({"version": label, "id": row["version"], "series": cat, "score": mean})
    # Typed even when empty: the plot takes its axes' kinds from the first frame it gets.
    return pd.DataFrame(out, columns=["version", "id", "series", "score"]).astype({"score": float})


def version_order(history: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(history["version"]))


def attribute_scores(rows: list[dict], last: int = 4) -> pd.DataFrame:
    """Long form (attribute, version, score) for the versions ``attribute_table`` shows.

    Drawn as points, one per version: Gradio's bar chart sums the bars of one x (stacked), so it
    showed one version where the table had two.
    """
    shown = [r for r in rows if r["per_attribute"]][:last]
    out = []
    for r in reversed(shown):
        for a in r["per_attribute"]:
            out.append(
                {
                    "attribute": f"{a['category']} / {a['attribute']}",
                    "version": r["version"][-8:],
                    "score": round(a["score"], SCORE_DIGITS),
                }
            )
    return pd.DataFrame(out, columns=["attribute", "version", "score"]).astype({"score": float})


def attribute_table(rows: list[dict], last: int = 4) -> pd.DataFrame:
    """Attributes x the newest versions: how each attribute's metric moved."""
    shown = [r for r in rows if r["per_attribute"]][:last]
    table: dict[str, dict[str, float]] = {}
    for r in reversed(shown):
        for a in r["per_attribute"]:
            key = f"{a['category']} / {a['attribute']}"
            table.setdefault(key, {})[r["version"][-8:]] = round(a["score"], SCORE_DIGITS)
    frame = pd.DataFrame.from_dict(table, orient="index")
    return frame.reset_index(names="attribute") if not frame.empty else pd.DataFrame(columns=["attribute"])


def run_markdown(runs: list[dict], training: bool) -> str:
    if not runs:
        return "No training run yet."
    r = runs[0]
    bar = "█" * int(r["progress"] * 20) + "░" * (20 - int(r["progress"] * 20))
    started = "the retrain policy" if r.get("trigger") == "policy" else "an admin"
    kind = "full, fine-tuning " + r["init"] if r["kind"] == "full" and r.get("init") else r["kind"]
    text = f"**Run {r['run_id']}** ({kind}, started by {started}): **{r['status']}** `{bar}` {r['progress']:.0%}  \n"
    text += html.escape(r["message"] or "")
    if r["error"]:
        text += f"  \nError: {html.escape(r['error'])}"
    if training:
        text += "  \n_A run is going: the training buttons are off until it ends._"
    return text


def change_frame(change: learning.VersionChange | None) -> pd.DataFrame:
    """Per attribute, before -> after on the same held-out products, biggest gain first."""
    columns = ["attribute", "before", "after", "change", "right before", "right after", "products"]
    if change is None:
        return pd.DataFrame(columns=columns)
    rows = [
        {
            "attribute": f"{c.category} / {c.attribute}",
            "before": round(c.before, 3),
            "after": round(c.after, 3),
            "change": round(c.change, 3),
            "right before": f"{c.right_before:.0%}",
            "right after": f"{c.right_after:.0%}",
            "products": c.support,
        }
        for c in change.attributes
    ]
    return pd.DataFrame(rows, columns=columns)


def change_markdown(change: learning.VersionChange | None) -> str:
    if change is None:
        return "_No comparison yet: it appears after the next retrain is judged._"
    gained = sum(1 for c in change.attributes if c.change > 0.0005)
    lost = sum(1 for c in change.attributes if c.change < -0.0005)
    return (
        f"**Version `{change.version}` against {html.escape(change.against)}**, on the same {change.held_out} "
        f"held-out products: metric {change.score_before:.3f} -> {change.score_after:.3f} "
        f"({change.score_after - change.score_before:+.3f}); {gained} attributes better, {lost} worse."
    )


def build_admin(ctx: AppContext) -> None:
    """Lay out the admin tab inside the current ``gr.Tab`` and wire its events."""
    with gr.Accordion("Data", open=True):
        with gr.Row():
            data_dir = gr.Textbox(label="Dataset folder on the server (train.csv, images/)", scale=3)
            labels_only = gr.Checkbox(label="Labels only (no images)", scale=1)
            # Offered when an import is refused for its taxonomy and the database is still empty.
            adopt = gr.Checkbox(label=ADOPT_CHECKBOX, scale=1, visible=False)
            import_btn = gr.Button("Import", variant="primary", scale=1)
        import_report = gr.Textbox(label="Import report", lines=6, interactive=False)
        with gr.Row():
            export_labels_btn = gr.Button("Export labels (train.csv)")
            export_preds_btn = gr.Button("Export predictions (submission)")
            export_file = gr.File(label="Download", interactive=False)
        counts_btn = gr.Button("Refresh label counts")
        counts_table = gr.Dataframe(
            pd.DataFrame(columns=["category", "attribute", "products", "labelled"]),
            interactive=False,
            label="Labelled products per category and attribute",
        )
    with gr.Accordion("Model", open=True):
        active_model_md = gr.Markdown()
        with gr.Row():
            auto_retrain = gr.Checkbox(label="Retrain automatically as labels come in", value=True, scale=1)
            policy_md = gr.Markdown(scale=3)
        with gr.Row():
            retrain_btn = gr.Button("Retrain (heads, fast)", variant="primary")
            full_btn = gr.Button("Full retrain (fine-tunes the active model; slow on a CPU)")
            fresh_btn = gr.Button("Full training from scratch (slowest)")
            cancel_btn = gr.Button("Cancel the run", variant="stop", interactive=False)
        run_md = gr.Markdown("No training run yet.")
        change_md = gr.Markdown()
        change_table = gr.Dataframe(interactive=False, label="Per attribute: the active version against the one before")
        versions_table = gr.Dataframe(interactive=False, label="Model versions (newest first)")
        with gr.Row():
            version_pick = gr.Dropdown(label="Version", choices=[], scale=3, elem_id="vt-version-pick")
            activate_btn = gr.Button("Activate (or roll back to) this version", scale=1)
        # Activating changes every seller's suggestions at once: it asks first.
        with gr.Row(visible=False) as confirm_row:
            confirm_md = gr.Markdown()
            confirm_btn = gr.Button("Yes, activate it", variant="stop", scale=0)
            keep_btn = gr.Button("Cancel", scale=0)
        activate_msg = gr.Markdown()
        # Points, not lines or bars: a first version is one point (a line of one point is not
        # drawn), and bars of one x would be summed.
        score_plot = gr.ScatterPlot(
            score_history([]),
            x="version",
            y="score",
            color="series",
            title="Metric per version (oldest first)",
            y_lim=[0, 1],
            height=300,
        )
        attribute_plot = gr.ScatterPlot(
            attribute_scores([]),
            x="attribute",
            y="score",
            color="version",
            title="Metric per attribute, newest versions",
            y_lim=[0, 1],
            height=360,
            x_label_angle=-45,
        )
        attribute_table_view = gr.Dataframe(interactive=False, label="Metric per attribute, newest versions")
    build_label_noise(ctx)
    timer = gr.Timer(2.0)

    def on_import(folder: str, only_labels: bool, adopt_taxonomy: bool, request: gr.Request) -> dict:
        """The report box says what happened, a refusal included (a toast alone vanishes)."""
        try:
            result = services.import_data(ctx, Viewer.of(request), folder, only_labels, adopt_taxonomy)
        except USER_ERRORS as exc:
            gr.Warning(str(exc))
            offer = isinstance(exc, db.LayoutMismatchError) and not services.has_products(ctx)
            return {import_report: f"Import refused: {exc}", adopt: gr.update(visible=offer or adopt_taxonomy)}
        summary = result["summary"]
        if result["adopted_taxonomy"]:
            summary += "\nReload the page to see the new categories in the Label tab's lists."
        return {import_report: summary, adopt: gr.update(value=False, visible=False)}

    @friendly
    def on_export_labels(request: gr.Request) -> dict:
        path = services.export_labels(ctx, Viewer.of(request))
        return {export_file: path, sent_export: path}

    @friendly
    def on_export_predictions(request: gr.Request) -> dict:
        path = services.export_predictions(ctx, Viewer.of(request))
        return {export_file: path, sent_export: path}

    def discard_sent(path: str | None) -> None:
        """Gradio has copied the file into its own cache when it sent it; the export's folder goes."""
        if path:
            services.discard_export(path)

    sent_export = gr.State(None)
    for button, handler in ((export_labels_btn, on_export_labels), (export_preds_btn, on_export_predictions)):
        button.click(handler, None, [export_file, sent_export], api_visibility="private").then(
            discard_sent, [sent_export], None, api_visibility="private"
        )

    @friendly
    def on_counts(request: gr.Request) -> pd.DataFrame:
        return pd.DataFrame(services.label_counts(ctx, Viewer.of(request)))

    counts_btn.click(on_counts, None, [counts_table], api_visibility="private")
    import_inputs, import_outputs = [data_dir, labels_only, adopt], [import_report, adopt]
    import_btn.click(on_import, import_inputs, import_outputs, api_visibility="private").success(
        on_counts, None, [counts_table], api_visibility="private"
    )

    def refresh(request: gr.Request) -> dict:
        """Run progress and versions; sellers (whose tab is hidden) get nothing."""
        try:
            viewer = Viewer.of(request)
            runs = services.training_runs(ctx, viewer, limit=1)
            rows = services.versions(ctx, viewer)
        except AccessDenied:
            return {}
        training = ctx.models.training
        state = learning.policy_state(ctx, viewer)
        change = learning.version_change(ctx, viewer)
        choices = [
            (
                f"{r['version']} ({r['status']}, "
                f"{r['score'] if r['score'] is None else round(r['score'], SCORE_DIGITS)})",
                r["version"],
            )
            for r in rows
        ]
        history, per_attribute = score_history(rows), attribute_scores(rows)
        return {
            run_md: run_markdown(runs, training),
            retrain_btn: gr.update(interactive=not training),
            full_btn: gr.update(interactive=not training),
            fresh_btn: gr.update(interactive=not training),
            cancel_btn: gr.update(interactive=bool(runs) and runs[0]["status"] in db.RUN_ACTIVE_STATUSES),
            policy_md: state.describe(),
            auto_retrain: gr.update(value=state.enabled),
            change_md: change_markdown(change),
            change_table: change_frame(change),
            versions_table: versions_frame(rows),
            version_pick: gr.update(choices=choices),
            score_plot: gr.update(value=history, sort=version_order(history)),
            attribute_plot: gr.update(value=per_attribute, sort=list(dict.fromkeys(per_attribute["attribute"]))),
            attribute_table_view: attribute_table(rows),
        }

    outputs = [
        run_md,
        retrain_btn,
        full_btn,
        fresh_btn,
        cancel_btn,
        policy_md,
        auto_retrain,
        change_md,
        change_table,
        versions_table,
        version_pick,
        score_plot,
        attribute_plot,
        attribute_table_view,
    ]
    timer.tick(refresh, None, outputs, api_visibility="private", show_progress="hidden")

    def on_model_line() -> str:
        return "Active: " + model_line(services.model_status(ctx))

    timer.tick(on_model_line, None, [active_model_md], api_visibility="private", show_progress="hidden")

    @friendly
    def on_train(kind: str, fresh: bool, request: gr.Request) -> dict:
        services.start_training(ctx, Viewer.of(request), kind, fresh=fresh)
        return refresh(request)

    def on_retrain(request: gr.Request) -> dict:
        return on_train("heads", False, request)

    def on_full(request: gr.Request) -> dict:
        return on_train("full", False, request)

    def on_fresh(request: gr.Request) -> dict:
        return on_train("full", True, request)

    @friendly
    def on_cancel(request: gr.Request) -> dict:
        learning.cancel_run(ctx, Viewer.of(request))
        return refresh(request)

    @friendly
    def on_auto(enabled: bool, request: gr.Request) -> dict:
        learning.set_auto_retrain(ctx, Viewer.of(request), enabled)
        return refresh(request)

    retrain_btn.click(on_retrain, None, outputs, api_visibility="private")
    full_btn.click(on_full, None, outputs, api_visibility="private")
    fresh_btn.click(on_fresh, None, outputs, api_visibility="private")
    cancel_btn.click(on_cancel, None, outputs, api_visibility="private")
    auto_retrain.input(on_auto, [auto_retrain], outputs, api_visibility="private")

    @friendly
    def on_ask(version: str | None, request: gr.Request) -> dict:
        if not version:
            raise services.ServiceError("choose a version first")
        active = ctx.models.active
        now = f"`{html.escape(active.version_id)}`" if active else "no model"
        question = (
            f"Activate `{html.escape(version)}`? It replaces {now} for every seller's suggestions at once "
            "(activating the old one again rolls it back)."
        )
        return {confirm_row: gr.update(visible=True), confirm_md: question, activate_msg: ""}

    activate_btn.click(on_ask, [version_pick], [confirm_row, confirm_md, activate_msg], api_visibility="private")

    def on_keep() -> dict:
        return {confirm_row: gr.update(visible=False), activate_msg: "Nothing changed."}

    keep_btn.click(on_keep, None, [confirm_row, activate_msg], api_visibility="private")

    @friendly
    def on_activate(version: str | None, request: gr.Request) -> dict:
        if not version:
            raise services.ServiceError("choose a version first")
        result = services.activate(ctx, Viewer.of(request), version)
        return {
            confirm_row: gr.update(visible=False),
            activate_msg: (
                f"Version `{result.active}` is active; {result.rescored} products of the review queue "
                "are being re-scored in the background."
            ),
            **refresh(request),
        }

    confirm_btn.click(on_activate, [version_pick], [confirm_row, activate_msg, *outputs], api_visibility="private")
