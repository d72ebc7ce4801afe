"""HQ member insight (issue 8): a simulated chain, reports, segments, campaigns.

Everything here runs at HQ and reads HQ's database; the till never imports it.
The numeric extras (numpy, scikit-learn for ``clusters``) are the optional
``insight`` extra. Reports read facts that ``sync.hq.insight.facts`` derives from
the stored journals into ``ins_*`` tables, so each report is one SQL aggregation
written once for SQLite and PostgreSQL.
"""
