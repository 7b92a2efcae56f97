"""One ``AppFactory`` for the whole suite: every test that needs the HTTP app of its
runtime builds it here, for a fraction of what ``create_app`` costs."""

from postern.http.app import AppFactory

app_for = AppFactory()
