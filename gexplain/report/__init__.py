"""The run report: one self-contained HTML page, its PNG figures and ``summary.json``.

:func:`render` reads a run folder (see :mod:`gexplain.run`) and writes model
accuracies, PGI/PGU/PGR deletion curves, feature agreement against random
attributions, rank stability across seeds (Jaccard@k heatmap), keep/remove
accuracy curves, the top genes per class with their agreement across seeds
and, on simulated data, whether they are true biomarkers, the completeness
error of IG, every class-averaged score, and the run's provenance. Plots need
matplotlib (extra ``plot``), imported only when a figure is drawn.

Examples
--------
>>> from gexplain.report import SECTIONS
>>> [sid for sid, _ in SECTIONS][:3]
['overview', 'accuracy', 'prediction-gaps']
"""

from ._data import HEADLINE, RunData, headline, load_run
from ._render import SECTIONS, render

__all__ = ["HEADLINE", "SECTIONS", "RunData", "headline", "load_run", "render"]
