"""The labeling app: settings, accounts, services, the Gradio layout and its API, the command line.

It wires ``taxonomy``, ``db`` and ``trainer`` together; nothing else imports it.
"""
