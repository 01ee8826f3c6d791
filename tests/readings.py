"""Shared assertions and request bodies for the tests of everything that returns a reading (docs/PLATE_SPEC.md "A
reading", "Serving")."""

from __future__ import annotations

import json

from alpr.spec import LAYOUTS

#: The keys of one plate of a reading.
PLATE_KEYS = frozenset({"text", "layout", "valid", "box", "score", "characters"})


def check_reading(reading: dict) -> None:
    """Assert that ``reading`` has the contract's shape: ``{"plates": [...]}``, plates by descending score, each with
    exactly :data:`PLATE_KEYS`, a known layout, a 4-number box and a boolean ``valid``."""
    assert set(reading) == {"plates"}
    scores = [p["score"] for p in reading["plates"]]
    assert scores == sorted(scores, reverse=True)
    for plate in reading["plates"]:
        assert set(plate) == PLATE_KEYS
        assert plate["layout"] in LAYOUTS and len(plate["box"]) == 4
        assert isinstance(plate["valid"], bool)


# --- PLATE_SPEC's serving API: request bodies and the checks of their answers (the live server and its image) --------


def post_json(client, path: str, body) -> object:
    """POST ``body`` as JSON with ``Content-Type: application/json`` (kserve reads nothing else) through an
    ``httpx.Client``; returns its response."""
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def v1_body(*encoded: str) -> dict:
    """A V1 ``:predict`` body of base64 images."""
    return {"instances": [{"image_bytes": {"b64": e}} for e in encoded]}


def v2_body(data, *, request_id: str = "req-1", **overrides) -> dict:
    """A V2 ``/infer`` body with one ``image`` input of base64 strings; ``overrides`` replace fields of the input."""
    inp = {"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data, **overrides}
    return {"id": request_id, "inputs": [inp]}


def check_v1_predictions(response, n: int) -> None:
    """Assert a 200 V1 answer with ``n`` predictions, each a contract reading (:func:`check_reading`)."""
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == n
    for reading in predictions:
        check_reading(reading)


def check_v2_plates(response, n: int, *, request_id: str = "req-1", model_name: str = "alpr") -> None:
    """Assert a 200 V2 answer to ``request_id`` from ``model_name`` with one ``plates`` output of ``n`` JSON strings,
    each a contract reading (:func:`check_reading`)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == request_id and body["model_name"] == model_name
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("plates", "BYTES", [n])
    assert all(isinstance(text, str) for text in output["data"])
    for text in output["data"]:
        check_reading(json.loads(text))
