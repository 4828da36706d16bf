"""The burst client's keep-alive pool against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from deliverybench.adapters.http_post import PostClient, PostPool


async def serve_posts(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> tuple[web.AppRunner, str]:
    """An aiohttp server on 127.0.0.1 taking POSTs on every path with ``handler``; (runner, a URL on it)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook?x=1"


def _run(handler: Callable[[web.Request], Awaitable[web.StreamResponse]], jobs: int, *, size: int = 4,
         timeout_s: float = 5.0, url: str | None = None) -> tuple[Counter[int | str], list[tuple[int, int | str]]]:
    outcomes: list[tuple[int, int | str]] = []

    async def main() -> None:
        runner, served = await serve_posts(handler)
        try:
            pool = PostPool(url or served, size=size, timeout_s=timeout_s,
                            on_result=lambda job, outcome, sent, done, _ra: outcomes.append((job[0], outcome)))
            for i in range(jobs):
                pool.submit((i, b"", b'{"id":%d}' % i, b"x-test: %d\r\n" % i))
            await asyncio.wait_for(pool.drain(), 30)
            pool.close()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return Counter(outcome for _, outcome in outcomes), outcomes


def test_every_post_arrives_once_with_its_body_and_headers() -> None:
    seen: list[tuple[bytes, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.read(), request.headers["x-test"], request.path_qs))
        return web.Response(status=202, text="accepted")

    counts, outcomes = _run(handler, 200)
    assert counts == {202: 200}
    assert sorted(i for i, _ in outcomes) == list(range(200))
    assert sorted(seen) == sorted((b'{"id":%d}' % i, str(i), "/hook?x=1") for i in range(200))


def test_status_codes_chunked_bodies_and_connection_close_are_handled() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        i = int((await request.read())[6:-1])
        if i % 3 == 0:
            response = web.StreamResponse(status=500)
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b"chunk one")
            await response.write(b"chunk two")
            await response.write_eof()
            return response
        if i % 3 == 1:
            return web.Response(status=200, headers={"Connection": "close"})
        return web.Response(status=201, text="x" * 10_000)

    counts, _ = _run(handler, 90, size=3)
    assert counts == {500: 30, 200: 30, 201: 30}


def test_a_consumer_that_does_not_answer_times_out() -> None:
    async def handler(request: web.Request) -> web.Response:
        if int((await request.read())[6:-1]) < 2:
            await asyncio.sleep(3)
        return web.Response(status=200)

    counts, outcomes = _run(handler, 6, size=2, timeout_s=0.3)
    assert counts == {"timeout": 2, 200: 4}
    assert sorted(i for i, o in outcomes if o == "timeout") == [0, 1]


def test_a_refused_consumer_fails_every_job_instead_of_hanging() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=200)

    counts, outcomes = _run(handler, 25, url="http://127.0.0.1:9/hook")
    assert counts == {"connection": 25}
    assert len(outcomes) == 25


def test_a_refused_connection_is_kept_as_the_pools_problem() -> None:
    async def main() -> PostPool:
        pool = PostPool("http://127.0.0.1:9/hook", size=1, timeout_s=1.0, max_connect_failures=1,
                        on_result=lambda *_: None)
        pool.submit((0, b"", b"{}", b""))
        await asyncio.wait_for(pool.drain(), 10)
        return pool

    pool = asyncio.run(main())
    assert pool.problem is not None and pool.problem.startswith("cannot connect to 127.0.0.1:9: ")
    assert "\n" not in pool.problem


def test_client_posts_to_many_paths_of_one_origin_and_reports_retry_after() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("/busy"):
            return web.Response(status=503, headers={"Retry-After": "7"})
        return web.Response(status=200, text=request.path)

    async def main() -> list[tuple[object, object]]:
        runner, url = await serve_posts(handler)
        base = url.split("/hook")[0]
        client = PostClient(connections_per_origin=4, timeout_s=5)
        try:
            return list(await asyncio.gather(*(client.post(f"{base}/sub/{i}", b"{}") for i in range(20)),
                                             client.post(f"{base}/sub/busy", b"{}")))
        finally:
            client.close()
            await runner.cleanup()

    results = asyncio.run(main())
    assert results[:20] == [(200, None)] * 20
    assert results[20] == (503, "7")
