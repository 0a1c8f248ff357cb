"""The page shells the server renders: each preloads every module its script imports, so the browser fetches them in
one round instead of one import level at a time, and carries the Python constants the scripts go by."""

from __future__ import annotations

import json
import re

from app.web.pages import ROOT, module_graph
from tests.browser.runs_in_db import write_run
from trainer.config import FIELD_GROUPS, RESUME_CHANGES
from trainer.protocol import RESUMABLE


def test_every_module_the_run_page_imports_is_preloaded(server):
    run_id = write_run(server.runs_dir, 10)
    html = server.client.get(f"/runs/{run_id}").text
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)">', html))
    shared = {"/static/chartpng.js", "/static/common.js"}
    assert preloaded == {f"/static/run/{p.name}" for p in (ROOT / "static" / "run").glob("*.js")} | shared


def test_the_module_graph_follows_imports_over_several_lines_and_folders(tmp_path, monkeypatch):  # and bare imports
    (tmp_path / "static" / "a").mkdir(parents=True)
    (tmp_path / "static" / "b").mkdir()
    (tmp_path / "static" / "a" / "main.js").write_text('import { x,\n  y } from "./x.js";\nimport "./w.js";\n')
    (tmp_path / "static" / "a" / "w.js").write_text("document.title = 'w';\n")
    (tmp_path / "static" / "a" / "x.js").write_text('import { z } from "../b/z.js";\nexport const x = 1, y = 2;\n')
    (tmp_path / "static" / "b" / "z.js").write_text("export const z = 3;\n")
    monkeypatch.setattr("app.web.pages.ROOT", tmp_path)
    assert module_graph("/static/a/main.js") == ["/static/a/main.js", "/static/a/w.js", "/static/a/x.js", "/static/b/z.js"]


def test_every_page_gets_the_python_constants_and_the_list_preloads_its_modules(server):
    """The statuses, form groups, checkpoint names... the scripts go by come from Python (static/common.js reads them),
    on every page, the error page too."""
    for path, status in (("/", 200), ("/compare", 200), ("/no-such-page", 404)):
        r = server.client.get(path)
        assert r.status_code == status
        data = re.search(r'<script type="application/json" id="page-constants">(.*?)</script>', r.text).group(1)
        constants = json.loads(data)
        assert constants["ACTIVE"] == ["queued", "running"] and set(constants["RESUMABLE"]) == set(RESUMABLE)
        assert constants["FIELD_GROUPS"] == list(FIELD_GROUPS) and constants["RESUME_CHANGES"] == list(RESUME_CHANGES)
    html = server.client.get("/").text
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)">', html))
    assert preloaded == {f"/static/list/{p.name}" for p in (ROOT / "static" / "list").glob("*.js")} | {"/static/common.js"}
