"""Page layout for the PDF that holds: text measured before it is placed, charts fitted to
their slot with their tick labels, and a check that no text leaves its page or overlaps.

A :class:`Page` is filled top to bottom; :meth:`Page.room` says how many inches are left,
so the PDF writer starts a new page instead of drawing past the bottom edge. Text is
wrapped by measured width (not by a character count), and :func:`fit` moves an axes so that
its tight box — title, tick labels, legend — lies inside its slot, as ``tight_layout`` does
for a whole figure. :func:`problems` is the check the tests run on every page: every text
box inside the page, and no two text boxes of different owners overlapping.
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from .charts import plain

A4 = (8.27, 11.69)  # inches, portrait
MARGIN = 0.6  # inches on every side
LINE = 1.45  # line spacing, as a multiple of the font size


class Page:
    """One A4 page filled from the top; ``y`` is the inches used so far."""

    def __init__(self) -> None:
        self.figure = MplFigure(figsize=A4)
        self._canvas = FigureCanvasAgg(self.figure)  # a renderer to measure text with
        self.renderer: RendererAgg = self._canvas.get_renderer()
        self.y = MARGIN
        self.width = A4[0] - 2 * MARGIN
        self._widths: dict[tuple[str, float, bool], float] = {}

    def room(self) -> float:
        """Inches left above the bottom margin."""
        return A4[1] - MARGIN - self.y

    def wrap(self, text: str, size: float, *, bold: bool = False) -> list[str]:
        """``text`` broken into lines no wider than the page's text width when drawn at
        ``size`` points (a word longer than a line is broken inside, at CamelCase if it can)."""
        limit = self.width * 72  # points
        space = self._width(" ", size, bold)
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line, used = "", 0.0
            for word in paragraph.split(" "):
                wide = self._width(word, size, bold)
                if line and used + space + wide <= limit:
                    line, used = f"{line} {word}", used + space + wide
                    continue
                if line:
                    lines.append(line)
                line, used = word, wide
                while used > limit:  # one very long word
                    cut = len(line) - 1
                    while cut > 1 and self._width(line[:cut], size, bold) > limit:
                        cut -= 1
                    cut = _boundary(line, cut)
                    lines.append(line[:cut])
                    line = line[cut:]
                    used = self._width(line, size, bold)
            lines.append(line)
        return lines

    def _width(self, text: str, size: float, bold: bool) -> float:
        """Points ``text`` takes at ``size``, with 3 % to spare: a line is measured as its
        words plus spaces (cached per word), which kerning makes a little off."""
        key = (text, size, bold)
        if key not in self._widths:
            font = FontProperties(size=size, weight="bold" if bold else "normal")
            width, _, _ = self.renderer.get_text_width_height_descent(text, font, ismath=False)
            self._widths[key] = width * 72 / self.figure.dpi * 1.03
        return self._widths[key]

    def height(self, lines: int, size: float) -> float:
        """Inches that ``lines`` lines of ``size`` points take."""
        return lines * size * LINE / 72

    def text(
        self, lines: list[str], size: float, *, bold: bool = False, colour: str = "#222"
    ) -> None:
        """Draw ``lines`` at the cursor and move it down."""
        self.figure.text(
            MARGIN / A4[0],
            1 - self.y / A4[1],
            plain("\n".join(lines)),
            fontsize=size,
            fontweight="bold" if bold else "normal",
            va="top",
            linespacing=LINE,
            color=colour,
        )
        self.y += self.height(len(lines), size)

    def gap(self, inches: float) -> None:
        self.y += inches

    def slot(self, inches: float) -> Bbox:
        """Reserve ``inches`` below the cursor; its box in figure coordinates."""
        top = 1 - self.y / A4[1]
        self.y += inches
        return Bbox.from_extents(MARGIN / A4[0], 1 - self.y / A4[1], 1 - MARGIN / A4[0], top)

    def axes(self, inches: float) -> tuple[Axes, Bbox]:
        """An axes in a slot of ``inches``; call :func:`fit` once it is drawn into."""
        box = self.slot(inches)
        return self.figure.add_axes(box.bounds), box


def _boundary(word: str, cut: int) -> int:
    """The last CamelCase, ``_`` or ``-`` boundary at or before ``cut`` (past the word's
    first third), else ``cut``: ``InferenceThroughput|Collapsed``, not ``Inferen|ce…``."""
    for i in range(cut, max(1, cut // 3), -1):
        if (word[i].isupper() and word[i - 1].islower()) or word[i - 1] in "_-.":
            return i
    return cut


def fit(axes: Axes, slot: Bbox, renderer: RendererAgg) -> None:
    """Move and shrink ``axes`` until its tight box (title, tick labels, legend) is inside
    ``slot`` (figure coordinates): names are never cut off at the page edge."""
    figure = axes.get_figure()
    assert isinstance(figure, MplFigure)
    for _ in range(2):  # the tick labels move with the axes: a second round settles them
        tight = axes.get_tightbbox(renderer)
        if tight is None:
            return
        box = tight.transformed(figure.transFigure.inverted())
        pos = axes.get_position()
        left = pos.x0 + max(0.0, slot.x0 - box.x0)
        right = pos.x1 - max(0.0, box.x1 - slot.x1)
        bottom = pos.y0 + max(0.0, slot.y0 - box.y0)
        top = pos.y1 - max(0.0, box.y1 - slot.y1)
        if right - left < 0.1 or top - bottom < 0.02:
            return  # nothing sensible left: keep it, the check will say so
        axes.set_position(Bbox.from_extents(left, bottom, right, top))


def problems(figure: MplFigure) -> list[str]:
    """Every visible text that leaves the figure, and every pair of texts that overlap
    unless both belong to one axes: ``[]`` for a page that holds."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    page = figure.bbox
    boxes: list[tuple[str, int, Bbox]] = []
    found: list[str] = []
    for owner, text in _texts(figure):
        box = text.get_window_extent(renderer)
        words = text.get_text().replace("\n", " ")
        if (
            box.x0 < page.x0 - 0.5
            or box.y0 < page.y0 - 0.5
            or box.x1 > page.x1 + 0.5
            or box.y1 > page.y1 + 0.5
        ):
            found.append(f"clipped: {words!r} at {box.bounds} outside {page.bounds}")
        boxes.append((words, owner, box.shrunk(0.95, 0.9)))  # touching is not overlapping
    for i, (words, owner, box) in enumerate(boxes):
        for other_words, other_owner, other in boxes[i + 1 :]:
            # An axes' own texts (ticks, title, legend) are matplotlib's to place.
            same_axes = owner == other_owner and owner != id(figure)
            if not same_axes and box.overlaps(other):
                found.append(f"overlap: {words!r} and {other_words!r}")
    return found


def _texts(figure: MplFigure) -> list[tuple[int, Text]]:
    """(owner id, text) for every text drawn: visible, not empty, and not one of the spare
    tick labels matplotlib keeps beyond the ticks in view. The owner is the axes (ticks,
    title, legend entries all belong to it) or the figure."""
    spare: set[int] = set()
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            for ticks, locs in (
                (axis.majorTicks, axis.get_majorticklocs()),
                (axis.minorTicks, axis.get_minorticklocs()),
            ):
                for index, tick in enumerate(ticks):
                    shown = index < len(locs) and low - 1e-9 <= locs[index] <= high + 1e-9
                    if not shown:
                        spare.update({id(tick.label1), id(tick.label2)})
    out: list[tuple[int, Text]] = []
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in spare:
            continue
        owner = text.axes if text.axes is not None else figure
        out.append((id(owner), text))
    return out
