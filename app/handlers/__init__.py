"""Handlers: plain functions behind the tabs' events, testable without a browser.

Each module serves one tab. Engine errors (`ValueError`, `OSError`) stop at this boundary and
become a `gr.Warning` in the page, with every output left as it was (`guarded`).
"""
