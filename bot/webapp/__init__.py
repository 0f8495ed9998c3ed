"""The counter Mini App: its initData check (`auth`), its HTTP routes under /app/ (`routes`)
and the static page it serves (`static/`)."""
