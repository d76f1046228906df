"""The collector's read-only dashboard: static files (index.html, its script and style sheet,
the vendored Chart.js) served by collector.dashboard.serve at / and /dashboard/{name}."""
