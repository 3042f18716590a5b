"""A script handler for the systemd tests: records an event's id once a gate file is gone.

argv: OUT GATE. Writes OUT.started (the event id) at once, then waits while GATE exists,
then appends the id to OUT. Runs as the service's dynamic user inside its sandbox.
"""

import json
import os
import sys
import time

out, gate = sys.argv[1], sys.argv[2]
event = json.load(sys.stdin)
with open(out + ".started", "w") as f:
    f.write(event["id"])
while os.path.exists(gate):
    time.sleep(0.05)
with open(out, "a") as f:
    f.write(event["id"] + "\n")
