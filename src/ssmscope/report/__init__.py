"""Report: figures and the rendered study report."""
