"""Accountability outputs: a case's disclosure packet (packet.py, rendered by packet_pdf.py) and the
transparency report for a period (transparency.py, charts by charts.py). docs/reports.md describes both.

Both are read-only over the records and audited ('case.packet', 'report.transparency') in the same
transaction as their reads.
"""
