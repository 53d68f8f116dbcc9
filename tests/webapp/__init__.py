"""In-process tests of the web app room: services, form and serving, without a server."""
