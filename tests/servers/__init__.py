"""Real servers the tests start on 127.0.0.1: nginx + nchan, and relays written to misbehave on purpose."""
