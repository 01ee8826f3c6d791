"""kmock's in-memory Kubernetes API on loopback for the tests that talk to a cluster, in a thread with its own event
loop (the kubernetes client is synchronous): :func:`serve_kubernetes` serves the given custom resources besides the
core ones and yields the emulator, its URL and clients bound to it; :func:`write_kubeconfig` points ``$KUBECONFIG``
at it for code that loads its own configuration. It stores objects and merges patches; it runs no controller."""

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import yaml


@contextlib.contextmanager
def serve_kubernetes(resources: Mapping[str, str] | None = None) -> Iterator[SimpleNamespace]:
    """Serve kmock's ``KubernetesEmulator``; ``resources`` maps ``group/version/plural`` to the kind of each custom
    resource (namespaced) it must know. Yields ``url``, ``emulator``, ``custom`` (``CustomObjectsApi``) and ``core``
    (``CoreV1Api``).

    Raises:
        RuntimeError: the emulator did not start within 30 s.
    """
    import kmock
    from kubernetes import client

    state: dict = {}
    ready = threading.Event()

    async def serve() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            for path, kind in (resources or {}).items():
                emulator.resources[path] = kmock.ResourceInfo(kind=kind, namespaced=True)
            state.update(
                emulator=emulator,
                url=str(server.url).rstrip("/"),
                stop=asyncio.Event(),
                loop=asyncio.get_running_loop(),
            )
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="kmock", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("kmock did not start")
    config = client.Configuration()
    config.host = state["url"]
    api_client = client.ApiClient(config)
    try:
        yield SimpleNamespace(
            url=state["url"],
            emulator=state["emulator"],
            custom=client.CustomObjectsApi(api_client),
            core=client.CoreV1Api(api_client),
        )
    finally:
        api_client.close()
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=10)


def write_kubeconfig(path: Path, url: str, namespace: str) -> Path:
    """Write a kubeconfig whose current context is the emulator at ``url`` in ``namespace``; returns ``path``."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": namespace}}
                ],
            }
        )
    )
    return path
