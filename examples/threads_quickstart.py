"""The README's threads example: a producer thread, a consumer thread, a callback."""

import threading

from dndm_p2p import sync
from dndm_p2p.proto.demo_pb2 import Temperature


def main(count: int = 100) -> int:
    """Send ``count`` temperatures from one thread, receive them in another; return how many
    the consumer got."""
    with sync.Router() as router:
        temps = router.subscribe("robot.arm.temp", Temperature, depth=1024, overflow="block")
        arm = router.publish("robot.arm.temp", Temperature)
        received: list[float] = []

        def consume() -> None:
            with temps:
                for msg in temps:  # plain iteration, ends when the interest closes
                    received.append(msg.celsius)
                    if len(received) == count:
                        return

        consumer = threading.Thread(target=consume)
        consumer.start()
        with arm:
            arm.wait_interest(timeout=5.0)
            for i in range(count):
                arm.send(Temperature(celsius=float(i)), timeout=5.0)
        consumer.join(timeout=10.0)
        print(len(received), received[-1])
        return len(received)


if __name__ == "__main__":
    main()
