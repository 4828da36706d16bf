"""``python -m deliverybench``: the ``deliverybench`` command, for when the console script is not on PATH."""

from deliverybench.cli.main import MODULE, launch

if __name__ == "__main__":
    launch(MODULE)
