"""Handlers: plain functions behind the tabs' events, testable without a browser.

Each module serves one tab. Every error stops at this boundary (`guarded`) and becomes a
`gr.Error`: the page and an API caller see the same message (an engine `ValueError` or
`OSError` says what is wrong; anything else only its type), and every output stays as it was.
"""
