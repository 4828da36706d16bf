"""An example third-party deliverybench target: a relay whose subscribers get each event in an envelope.

Installed, it registers ``envelope-relay`` under the ``deliverybench.targets``
entry-point group, so ``run_bench.py --target envelope-relay --modes push``
starts :mod:`deliverybench_envelope_relay.server` and measures it. Nothing
here is imported until the harness asks for the target.
"""

__all__: list[str] = []
