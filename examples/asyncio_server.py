"""An asyncio server and a dndm subscription in one loop (the FastAPI shape).

A tiny HTTP server (``asyncio.start_server``) answers ``GET /temp`` with the latest
temperature, which a dndm subscriber task keeps up to date; a publisher task sends readings.
Run it, then ``curl http://127.0.0.1:8080/temp``; Ctrl-C stops everything cleanly and the
program exits with status 130.  ``--port 0`` picks a free port; the port is printed first.
"""

import argparse
import asyncio
import sys

from dndm_p2p import aio
from dndm_p2p.proto.demo_pb2 import Temperature


async def serve(port: int, ready: "asyncio.Future[int] | None" = None) -> None:
    """Run the HTTP server, the subscriber and the publisher until cancelled."""
    latest = {"celsius": float("nan")}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        if request.startswith(b"GET /temp "):
            body, status = f'{{"celsius": {latest["celsius"]}}}'.encode(), b"200 OK"
        else:
            body, status = b"not found", b"404 Not Found"
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with aio.Router() as router:
        temps = router.subscribe("robot.arm.temp", Temperature)
        arm = router.publish("robot.arm.temp", Temperature)

        async def follow() -> None:
            async with temps:
                async for msg in temps:
                    latest["celsius"] = msg.celsius

        async def produce() -> None:
            async with arm:
                reading = 20.0
                while True:
                    await arm.send(Temperature(celsius=reading))
                    reading += 0.5
                    await asyncio.sleep(0.01)

        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server, asyncio.TaskGroup() as tasks:
            tasks.create_task(follow())
            tasks.create_task(produce())
            bound = server.sockets[0].getsockname()[1]
            print(bound, flush=True)
            if ready is not None:
                ready.set_result(bound)
            await server.serve_forever()


def main() -> None:
    """Parse ``--port`` and serve until Ctrl-C (exit status 130)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    port = parser.parse_args().port
    try:
        asyncio.run(serve(port))
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
