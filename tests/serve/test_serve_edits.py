"""Attribute edits over HTTP: `edit=NAME:AMOUNT,…` on the image routes, the model listing, the page's
sliders and permalink, and one-line 400s. In-process (FastAPI's TestClient) on tiny models made here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facegan.sampling.generate import load_generator, to_pil
from facegan.serve.app import build_app
from facegan.serve.models import png_bytes
from tests.serve.helpers import make_models  # tiny32 (no edits) and tiny64 (Smiling, Blond_Hair)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    models = make_models(tmp_path_factory.mktemp("models"))
    app = build_app(
        {name: load_generator(path) for name, path in models.items()},
        sources={k: str(v) for k, v in models.items()},
    )
    with TestClient(app) as c:
        yield c


def face(client: TestClient, query: str) -> bytes:
    reply = client.get(f"/api/face.png?model=tiny64&seed=42&{query}")
    assert reply.status_code == 200, reply.text
    return reply.content


def test_edit_changes_the_face_and_zero_is_the_unedited_face(client: TestClient) -> None:
    plain = face(client, "")
    assert face(client, "edit=Smiling:0") == plain
    assert face(client, "edit=Smiling:0,Blond_Hair:0.0") == plain
    smiling = face(client, "edit=Smiling:1")
    assert smiling != plain and face(client, "edit=Smiling:1,Blond_Hair:-0.5") not in (plain, smiling)
    # the edit is part of the cache key, and the same request gives the same bytes
    tag_plain = client.get("/api/face.png?model=tiny64&seed=42").headers["etag"]
    tag_edit = client.get("/api/face.png?model=tiny64&seed=42&edit=Smiling:1").headers["etag"]
    assert tag_plain != tag_edit and face(client, "edit=Smiling:1") == smiling


def test_edited_face_is_the_one_the_python_api_draws(client: TestClient, tmp_path: Path) -> None:
    import facegan

    models = make_models(tmp_path)
    g = facegan.load(str(models["tiny64"]), amp="off")  # as the server here loads it
    t = g.display_truncation  # what the server draws at when a request names no truncation
    want = png_bytes(to_pil(g.generate([42], edit={"Smiling": 1.0}, truncation=t, output="tensor")[0]))
    assert face(client, "edit=Smiling:1&size=native") == want


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("edit=Frowning:1", "unknown edit 'Frowning'; this model's edits: Smiling, Blond_Hair"),
        ("edit=Smiling:2", "from -1 to 1"),
        ("edit=Smiling:nan", "from -1 to 1"),
        ("edit=Smiling", "bad edit 'Smiling'"),
        ("edit=Smiling:x", "bad edit"),
    ],
)
def test_bad_edits_are_400_with_one_line(client: TestClient, query: str, message: str) -> None:
    for path in ("/api/face.png", "/api/grid.png", "/"):
        reply = client.get(f"{path}?model=tiny64&seed=1&{query}")
        assert reply.status_code == 400, (path, reply.text)
        if path != "/":
            assert message in reply.json()["error"] and "\n" not in reply.json()["error"]
        else:
            assert message.split(";")[0].replace("'", "&#39;") in reply.text


def test_model_without_edits_is_a_400(client: TestClient) -> None:
    reply = client.get("/api/face.png?model=tiny32&seed=1&edit=Smiling:1")
    assert reply.status_code == 400 and "no edit directions" in reply.json()["error"]


def test_models_list_their_edits(client: TestClient) -> None:
    listed = {m["name"]: m["edits"] for m in client.get("/api/models").json()}
    assert listed == {"tiny32": [], "tiny64": ["Smiling", "Blond_Hair"]}


def test_grid_and_walk_take_edits(client: TestClient) -> None:
    plain = client.get("/api/grid.png?model=tiny64&seed=3&n=4").content
    assert client.get("/api/grid.png?model=tiny64&seed=3&n=4&edit=Blond_Hair:-1").content != plain
    walk = client.get("/api/interpolate.gif?model=tiny64&from=1&to=2&frames=3&edit=Smiling:1")
    assert walk.status_code == 200 and walk.content.startswith(b"GIF8")


def test_page_has_a_slider_per_edit_and_a_permalink_of_the_edits(client: TestClient) -> None:
    html = client.get("/?model=tiny64&seed=9&edit=Smiling:0.5").text
    assert 'id="edit-Smiling"' in html and 'id="edit-Blond_Hair"' in html
    assert 'data-edit="Smiling" min="-1" max="1"' in html and 'value="0.5"' in html
    assert "edit=Smiling%3A0.5" in html  # the face, the download and the permalink carry it
    no_edits = client.get("/?model=tiny32&seed=9").text
    assert "edit-slider" not in no_edits


def test_plain_serve_opens_on_celeba64_so_a_url_without_model_takes_its_edits() -> None:
    """`facegan serve` with no model list serves every shipped model, celeba64 first: the page opens on
    human faces and `/api/face.png?seed=42&edit=Smiling:1,Eyeglasses:0.5` (no model=) is celeba64's
    face with those edits, not a 400 from anime64 (first by name), which has no such edits."""
    from facegan.serve import ServeConfig

    sources = ServeConfig().sources()
    assert next(iter(sources)) == "celeba64" and set(sources) >= {"celeba64", "anime64"}
    app = build_app({name: load_generator(path) for name, path in sources.items()}, sources=sources)
    with TestClient(app) as shipped:
        edited = shipped.get("/api/face.png?seed=42&edit=Smiling:1,Eyeglasses:0.5")
        assert edited.status_code == 200, edited.text
        named = shipped.get("/api/face.png?model=celeba64&seed=42&edit=Smiling:1,Eyeglasses:0.5")
        assert edited.content == named.content
        assert '<option value="celeba64" selected>' in shipped.get("/").text
