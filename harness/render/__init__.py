"""Rendering: terminal tables, plots and the Jinja2 templates of the reports."""
