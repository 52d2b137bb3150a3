"""The HTML page (facegan/serve/page.py) on a real server: its face, menus, static files, escaping."""

from __future__ import annotations

import re

import pytest

from tests.serve.helpers import TINY64_DISPLAY, fetch, get_ok

# ----------------------------------------------------------------------------- the page


def test_page_shows_the_requested_face(server: str) -> None:
    headers, body = get_ok(f"{server}/?seed=123&model=tiny64")
    page = body.decode()
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert (
        'id="face" class="smooth" src="/api/face.png?seed=123&amp;model=tiny64&amp;size=512'
        f'&amp;resample=lanczos&amp;truncation={TINY64_DISPLAY:g}"'
    ) in page
    assert '<span id="seed">123</span>' in page
    assert 'id="permalink" href="/?seed=123&amp;model=tiny64"' in page
    for element_id in ("new-face", "model", "walk-form", "walk-go", "variety", "upscale", "upscale-note"):
        assert f'id="{element_id}"' in page
    assert "http://" not in page and "https://" not in page, "the page must not need the network"


def test_page_escapes_what_it_echoes(server: str) -> None:
    """The page is an autoescaped template: a hostile model name echoed in the error page for `/`
    comes back as text, never as markup."""
    status, headers, body = fetch(f"{server}/?model=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 404 and headers["content-type"].startswith("text/html")
    assert b"<script" not in body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_page_loads_its_css_and_script_from_static_files(server: str) -> None:
    """No inline code (the CSP allows only 'self'); the CSS and script it names are served, as
    packaged, with their types and versioned URLs."""
    from importlib import resources

    headers, body = get_ok(f"{server}/?seed=1")
    page, csp = body.decode(), headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<style" not in page and "style=" not in page and "<script>" not in page
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert sorted(u.split("?")[0] for u in urls) == ["/static/page.css", "/static/page.js"], urls
    for url in urls:
        assert re.search(r"\?v=[0-9a-f]{12}$", url), url  # a new release is a new URL
        static_headers, static_body = get_ok(server + url.replace("&amp;", "&"))
        name = url.split("/")[-1].split("?")[0]
        assert static_body == (resources.files("facegan.serve") / "static" / name).read_bytes()
        assert static_headers["content-type"].split(";")[0] in (
            "text/css",
            "text/javascript",
            "application/javascript",
        )
        assert static_headers["x-content-type-options"] == "nosniff"
    assert fetch(f"{server}/static/nope.js")[0] == 404


def test_page_picks_a_new_face_per_load(server: str) -> None:
    seeds = set()
    for _ in range(3):
        page = get_ok(f"{server}/")[1].decode()
        seeds.add(page.split('<span id="seed">')[1].split("<")[0])
    assert len(seeds) == 3


@pytest.mark.parametrize("query", ["seed=-1", "model=nope", "seed=abc", "truncation=0.01", "resample=cubic"])
def test_page_rejects_bad_params(server: str, query: str) -> None:
    status, headers, body = fetch(f"{server}/?{query}")
    assert 400 <= status < 500
    assert headers["content-type"].startswith("text/html")
    assert b"Traceback" not in body


def test_page_offers_variety_and_upscaling_and_names_them_in_the_permalink(server: str) -> None:
    page = get_ok(f"{server}/?seed=12&model=tiny64")[1].decode()
    # defaults: the model's display truncation, smooth upscaling, said on the page
    assert '<option value="1.5" selected>medium (1.5, default)</option>' in page
    assert '<option value="lanczos" selected>smooth (Lanczos)</option>' in page
    assert "64×64 px face shown at 512 px with smooth Lanczos upscaling" in page
    assert f"resample=lanczos&amp;truncation={TINY64_DISPLAY:g}" in page
    crisp = get_ok(f"{server}/?seed=12&model=tiny64&truncation=0&resample=nearest")[1].decode()
    assert '<option value="0" selected>full (off)</option>' in crisp and "crisp pixels" in crisp
    assert 'id="permalink" href="/?seed=12&amp;model=tiny64&amp;truncation=0&amp;resample=nearest"' in crisp
    assert 'class="crisp"' in crisp and 'id="walk" class="crisp"' in crisp
    # the walk area stays hidden (no broken-image frame) until a walk is made
    css = get_ok(server + re.findall(r'href="(/static/page.css[^"]*)"', page)[0])[1].decode()
    assert "#walk[hidden] { display: none; }" in css and 'width="256" height="256" hidden>' in page
