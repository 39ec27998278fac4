"""Layout helpers shared by the figures."""

from __future__ import annotations

from matplotlib.figure import Figure


def title_and_tighten(fig: Figure, title: str, *, fontsize: float = 12, top_in: float = 0.55) -> None:
    """A suptitle clear of the first row's axes titles: ``tight_layout`` keeps ``top_in`` inches free at the top for
    it. A fixed fraction of the height does not: on a tall multi-run figure it is too thin and the two overlap."""
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=fontsize, y=1 - 0.1 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - top_in / height))
