"""A server that never announces itself: for ServerProcess's ready timeout.

It talks on both streams (but never the ready line) and ignores SIGTERM, so
the test also proves that a child which never got ready is killed outright.
"""

import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print('{"ready": false}', flush=True)
print("booting, slowly", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
