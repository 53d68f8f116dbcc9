"""``python app.py [serve|worker|create-user|import|taxonomy|export-labels|register-model|score|...]``;
``python app.py --help`` lists them all."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import db
import trainer
from taxonomy import FormatError, TaxonomyError, save_taxonomy, taxonomy_from_folder

from . import backup, gate, scoring, torchrun
from . import settings as settings_mod
from . import worker as worker_mod
from .adoption import ADOPT_FLAG, adopt_dataset_taxonomy, adopted_summary, mismatch_advice
from .auth import ExpiringTokens, ensure_initial_admin, load_users_file, make_authenticator
from .context import AppContext, open_context
from .serving import ModelError

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parents[1] / "app.py"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Visual Taxonomy: the labeling app and its tools. Without a command: serve.",
        epilog="'python app.py COMMAND --help' lists a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    serve = sub.add_parser("serve", help="start the web app (the default)")
    settings_mod.add_arguments(serve)
    settings_mod.add_server_arguments(serve)
    settings_mod.add_policy_arguments(serve)
    settings_mod.add_model_arguments(serve)
    settings_mod.add_training_arguments(serve)
    serve.add_argument(
        "--no-auth", action="store_true", help="no login: everyone is the admin (refused unless listening on loopback)"
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="start no training worker beside the app: runs wait for a 'python app.py worker' on the same database",
    )
    work = sub.add_parser("worker", help="run the queued training runs, one at a time (serve starts one by itself)")
    settings_mod.add_arguments(work)
    settings_mod.add_training_arguments(work)
    work.add_argument("--once", action="store_true", help="run at most one queued run, then exit")
    work.add_argument(
        "--poll-seconds", type=float, default=worker_mod.POLL_S, help="how often to look for a queued run when idle"
    )
    work.add_argument(
        "--threads", type=_positive, default=None, help="threads of training (default: every core but one)"
    )
    work.add_argument(
        "--train-nproc",
        type=_positive,
        default=None,
        help="train full runs as 'torchrun --nproc-per-node N -m trainer train' (default: in this process)",
    )
    work.add_argument(
        "--train-config",
        type=Path,
        default=None,
        help='with --train-nproc: a JSON config for \'trainer train --config\' ({"train": ..., "model": ...})',
    )
    work.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # serve's embedded worker
    user = sub.add_parser("create-user", help="create a user, or set the password of an existing one")
    settings_mod.add_arguments(user)
    user.add_argument("name")
    user.add_argument("--role", choices=["seller", "admin"], default="seller")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    imp = sub.add_parser("import", help="import a competition-layout dataset (train.csv, images/)")
    settings_mod.add_arguments(imp)
    imp.add_argument("data", type=Path, help="folder holding train.csv (and images/)")
    imp.add_argument("--labels-only", action="store_true", help="import the labels of rows without images")
    imp.add_argument("--owner", default="admin", help="user who will own the imported products")
    imp.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="products per transaction; a crash loses at most the batch in flight",
    )
    imp.add_argument(
        ADOPT_FLAG,
        action="store_true",
        help="while the database holds no products: make the dataset's taxonomy (its category_attributes file "
        "and the values in its train.csv) the app's, stored in the database",
    )
    tax = sub.add_parser("taxonomy", help="build a taxonomy file")
    tax_sub = tax.add_subparsers(dest="taxonomy_command", metavar="ACTION", required=True)
    from_data = tax_sub.add_parser(
        "from-data",
        help="from a competition-layout folder: category_attributes.parquet (or .json) and the values in train.csv",
    )
    from_data.add_argument("data", type=Path, help="folder holding category_attributes.parquet and train.csv")
    from_data.add_argument("--out", type=Path, required=True, help="taxonomy JSON to write (for --taxonomy-file)")
    for name, what in (
        ("export-labels", "current labels (train.csv layout)"),
        ("export-predictions", "newest predictions (submission layout)"),
    ):
        exp = sub.add_parser(name, help=f"write {what} of every product")
        settings_mod.add_arguments(exp)
        exp.add_argument("out", type=Path)
        exp.add_argument("--as-user", default="admin", help="export what this user may see (an admin: all)")
    reg = sub.add_parser(
        "register-model",
        help="judge a checkpoint trained elsewhere (python -m trainer train) by the gate; activate it if it passes",
    )
    settings_mod.add_arguments(reg)
    reg.add_argument("checkpoint", type=Path, help="model.pt written by python -m trainer train (copied, not moved)")
    reg.add_argument(
        "--force", action="store_true", help="activate it even if it scores worse (recorded in its notes and metrics)"
    )
    reg.add_argument("--as-user", default="admin", help="the admin whose view of the products judges it")
    score = sub.add_parser("score", help="suggest with the active model for the whole catalogue")
    settings_mod.add_arguments(score)
    which = score.add_mutually_exclusive_group(required=True)
    which.add_argument("--missing", action="store_true", help="every product with no suggestion by the active model")
    which.add_argument("--all", action="store_true", help="every product with a photo, again")
    score.add_argument(
        "--batch-size", type=_positive, default=scoring.BATCH, help="photos per forward pass and transaction"
    )
    score.add_argument(
        "--decode-threads",
        type=_positive,
        default=scoring.DECODE_THREADS,
        help="threads decoding photos beside the model",
    )
    score.add_argument("--threads", type=_positive, default=None, help="threads of the model (default: every core)")
    backup_cmd = sub.add_parser("backup", help="copy the database, photos and models into a backup folder")
    settings_mod.add_arguments(backup_cmd)
    backup_cmd.add_argument("out", type=Path, help="folder to write the backup into")
    restore_cmd = sub.add_parser("restore", help="restore a backup folder made by 'backup'")
    settings_mod.add_arguments(restore_cmd)
    restore_cmd.add_argument("backup", type=Path)
    restore_cmd.add_argument("--force", action="store_true", help="replace a database that holds products")
    return parser


def backup_command(args: argparse.Namespace) -> int:
    settings = settings_mod.from_args(args)
    if args.command == "backup":
        print(f"backup written to {backup.backup(settings, args.out)}")
    else:
        counts = backup.restore(settings, args.backup, force=args.force)
        print("restored: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


def _owner(ctx: AppContext, name: str) -> db.User:
    with ctx.transaction() as session:
        user = db.get_user_by_name(session, name)
        if user is None:
            raise db.UserError(f"no user {name!r}; create it with: python app.py create-user {name} --role admin")
        session.expunge(user)
        return user


def launch(ctx: AppContext, *, no_auth: bool = False) -> gr.Blocks:
    """Build the app and start its server on ``ctx.settings``' host and port without blocking;
    the browser tests start it this way too, on a context of their own."""
    from .ui import CSS, HEAD, build

    settings = ctx.settings
    demo = build(ctx)
    demo.queue(default_concurrency_limit=8)
    auth = {"auth_dependency": lambda request: "admin"} if no_auth else {"auth": make_authenticator(ctx)}
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        max_file_size=f"{settings.max_upload_mb}mb",
        auth_message="Sign in with your Visual Taxonomy account.",
        css=CSS,
        head=HEAD,
        show_error=True,
        prevent_thread_lock=True,
        **auth,
    )
    issued_before, tokens = demo.server_app.tokens, ExpiringTokens(settings.session_hours * 3600)
    demo.server_app.tokens = tokens
    # The server already answers while this swap happens: keep sign-ins made in that moment.
    for token, user in list(issued_before.items()):
        tokens[token] = user
    return demo


def spawn_worker(settings: settings_mod.Settings) -> subprocess.Popen:
    """Start the embedded worker of ``serve``: ``python app.py worker`` on the same data, as a child
    process that exits when this one does; its log goes where the server's does."""
    command = [sys.executable, str(APP), "worker", "--data-dir", str(settings.data_dir)]
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    if settings.model_dir is not None:
        command += ["--model-dir", str(settings.model_dir)]
    if settings.taxonomy_file is not None:
        command += ["--taxonomy-file", str(settings.taxonomy_file)]
    if settings.weights:
        command += ["--weights", settings.weights]
    child = subprocess.Popen([*command, "--parent-pid", str(os.getpid())])
    log.info("started the embedded training worker (pid %s)", child.pid)
    return child


def serve(args: argparse.Namespace) -> int:
    settings = settings_mod.from_args(args)
    if args.no_auth and not settings.is_loopback:
        print(
            f"refusing to listen on {settings.host} without authentication: anyone on the network could "
            "read and change every label. Drop --no-auth (users sign in) or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    ctx = open_context(settings)
    if settings.users_file:
        load_users_file(ctx, settings.users_file)
    created = ensure_initial_admin(ctx)  # only when there is still no admin
    if created:
        print(f"Created the first user 'admin'; its password is in {created} (readable by you only).")
    # Started after open_context, which upgraded the schema and ended the runs of dead workers.
    child = None if args.no_worker else spawn_worker(settings)
    try:
        demo = launch(ctx, no_auth=args.no_auth)
        ctx.policy.start()  # it only queues runs, here where the saves that nudge it happen
        ctx.models.start_following(settings.model_poll_seconds)
        demo.block_thread()
    finally:
        if child is not None:
            child.terminate()  # a kill of this process leaves it to notice by itself (watch_parent)
    return 0


def worker_command(args: argparse.Namespace) -> int:
    ctx = open_context(settings_mod.from_args(args))  # loads the active version: the base of a run
    worker = worker_mod.Worker(ctx.models, threads=args.threads)
    if args.train_nproc is not None:
        ctx.models.train_full = torchrun.Torchrun(
            args.train_nproc, threads=worker.threads, config_file=args.train_config
        )
    elif args.train_config is not None:
        raise SystemExit("--train-config goes with --train-nproc")
    if args.parent_pid is not None:
        worker.watch_parent(args.parent_pid)
    worker.serve(poll_s=args.poll_seconds, once=args.once)
    return 0


def create_user(args: argparse.Namespace) -> int:
    ctx = open_context(settings_mod.from_args(args), load_model=False)
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"Password for {args.name}: ")
    )
    with ctx.transaction() as session:
        user = db.get_user_by_name(session, args.name)
        if user is None:
            db.create_user(session, args.name, password, role=args.role)
            print(f"created {args.role} {args.name!r}")
        else:
            db.set_password(session, user, password)
            user.role = args.role
            print(f"updated {args.name!r} ({args.role})")
    return 0


def import_command(args: argparse.Namespace) -> int:
    ctx = open_context(settings_mod.from_args(args), load_model=False)
    ensure_initial_admin(ctx)
    owner = _owner(ctx, args.owner)
    if args.adopt_taxonomy:
        adopted = adopt_dataset_taxonomy(ctx, args.data)
        if adopted is not None:
            print(adopted_summary(adopted, args.data))
    try:
        report = db.import_dataset(
            ctx.sessions,
            ctx.taxonomy,
            ctx.media,
            args.data,
            owner=owner,
            labels_only=args.labels_only,
            batch_size=args.batch_size,
        )
    except db.LayoutMismatchError as exc:
        raise db.LayoutMismatchError(f"{exc}. {mismatch_advice(ctx, args.data)}") from None
    print(report.summary())
    return 0


def taxonomy_command(args: argparse.Namespace) -> int:
    built = taxonomy_from_folder(args.data)
    save_taxonomy(built, args.out)
    pairs = sum(len(c.attributes) for c in built.categories)
    print(f"wrote {args.out}: {len(built.categories)} categories, {pairs} (category, attribute) pairs")
    return 0


def export_command(args: argparse.Namespace) -> int:
    ctx = open_context(settings_mod.from_args(args), load_model=False)
    viewer = _owner(ctx, args.as_user)
    write = db.export_labels if args.command == "export-labels" else db.export_predictions
    with ctx.transaction() as session:
        count = write(session, viewer, ctx.taxonomy, args.out)
    print(f"wrote {count} rows to {args.out}")
    return 0


def register_model_command(args: argparse.Namespace) -> int:
    # The active model is loaded: it is what the checkpoint is judged against. Runs of a serving
    # app on the same database are left alone (recover_runs=False).
    ctx = open_context(settings_mod.from_args(args), recover_runs=False)
    admin = _owner(ctx, args.as_user)
    if admin.role != "admin":
        raise db.UserError(f"{args.as_user!r} is not an admin; give an admin with --as-user")
    verdict = gate.register_checkpoint(ctx.models, args.checkpoint, user_id=admin.id, force=args.force)
    print(f"registered version {verdict.version_id}: {verdict.message}")
    if verdict.activated:
        print(
            "it is the active version: an app running on this database serves it from its next suggestion; "
            "'python app.py score --missing' suggests with it for every product"
        )
    return 0


def score_command(args: argparse.Namespace) -> int:
    ctx = open_context(settings_mod.from_args(args), recover_runs=False)
    active = ctx.models.active
    if active is None:
        raise ModelError(
            "no usable active model version to score with: train one in the Admin tab, "
            "or register one with 'python app.py register-model PATH'"
        )
    interactive = sys.stderr.isatty()
    last = [-1.0]

    def progress(done: int, total: int, seconds: float) -> None:
        if seconds - last[0] < 1.0 and done < total:
            return
        last[0] = seconds
        rate = done / seconds if seconds > 0 else 0.0
        remaining = (total - done) / rate if rate > 0 else 0.0
        left = f", about {remaining / 60:.0f} min left" if remaining >= 120 else f", about {remaining:.0f} s left"
        left = left if rate > 0 and done < total else ""
        line = f"scored {done}/{total} products ({rate:.0f}/s{left})"
        print(f"\r{line}" if interactive else line, end="" if interactive else "\n", file=sys.stderr, flush=True)

    with trainer.intra_op_threads(args.threads) if args.threads else contextlib.nullcontext():
        report = scoring.score_catalogue(
            ctx.sessions,
            ctx.media,
            active.version_id,
            active.predictor,
            missing_only=args.missing,
            batch_size=args.batch_size,
            decode_threads=args.decode_threads,
            progress=progress,
        )
    if interactive:
        print(file=sys.stderr)
    resumed = f" (continuing an interrupted run after product {report.resumed_after})" if report.resumed_after else ""
    print(
        f"scored {report.scored} products with version {report.version_id} in {report.seconds:.1f} s{resumed}"
        + (f"; {report.unreadable} photos could not be read (see the log)" if report.unreadable else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = _parser().parse_args(argv)
    commands = {
        "serve": serve,
        "worker": worker_command,
        "create-user": create_user,
        "import": import_command,
        "taxonomy": taxonomy_command,
        "export-labels": export_command,
        "export-predictions": export_command,
        "register-model": register_model_command,
        "score": score_command,
        "backup": backup_command,
        "restore": backup_command,
    }
    try:
        return commands[args.command](args)
    except (
        FormatError,
        TaxonomyError,
        db.UserError,
        db.RegistryError,
        FileNotFoundError,
        backup.BackupError,
        gate.GateError,
        ModelError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
