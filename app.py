"""Visual Taxonomy web app (placeholder until the app issue lands)."""

if __name__ == "__main__":
    import gradio as gr

    with gr.Blocks(title="Visual Taxonomy") as demo:
        gr.Markdown("# Visual Taxonomy\nThe labeling app is being built.")
    demo.launch(server_name="127.0.0.1")
