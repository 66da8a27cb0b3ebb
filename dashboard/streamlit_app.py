"""dashboard room: the Streamlit entry point. Declares the pages and the frame around them.

Run with `edgewatch dashboard` (or `streamlit run dashboard/streamlit_app.py`).
"""

from __future__ import annotations

import streamlit as st

from dashboard import ui
from dashboard.identity import write_session_cookie

st.set_page_config(page_title="edgewatch", page_icon=":material/sensors:", layout="wide")

pages = [
    st.Page(ui.PAGE_FLEET, title="Fleet overview", icon=":material/dashboard:", default=True),
    st.Page(ui.PAGE_ALERTS, title="Alerts", icon=":material/notifications_active:"),
    st.Page(ui.PAGE_TRENDS, title="Trends", icon=":material/show_chart:"),
    st.Page(ui.PAGE_DEVICE, title="Device", icon=":material/memory:"),
    st.Page(ui.PAGE_MODELS, title="Models", icon=":material/neurology:"),
    st.Page(ui.PAGE_INGEST, title="Ingest health", icon=":material/input:"),
    st.Page(ui.PAGE_RULES, title="Rules", icon=":material/rule:"),
]
# Navigation is declared on every run so a link (/alerts, /trends?...) survives the sign-in;
# it stays hidden, and `ui.context` stops the run at the sign-in form, until there is a user.
page = st.navigation(pages, position="sidebar" if ui.signed_in_hint() else "hidden")
ui.narrow_layout()
settings, _, user = ui.context()
# After a sign-in, the browser keeps the session in a signed cookie (reloads, tabs, links).
write_session_cookie(settings)
ui.sidebar_footer(settings, user)
page.run()
