"""Public import path ``molexp.report`` (shown in docs/reports.md): the one-file HTML run report.

The code lives in ``molexp.views.report``; this module only re-exports its public names.
"""

from .views.report import __all__, human_bytes, report_html, write_report  # noqa: F401
