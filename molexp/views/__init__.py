"""Views of a graph or a run: ``visualize`` (Mermaid, DOT, SVG, timeline), ``report`` (one HTML file),
``html`` (notebook tables). Read-only: nothing here changes a run.
"""
