"""Loaded into every Python kernel of the interpreter: two more IPython display formats, the ones
the official interpreter SDKs read as `Result.data` and `Result.chart`.

- `sandbank/data`: a pandas DataFrame as its columns (`{column: [values]}`), JSON-safe.
- `sandbank/chart`: a matplotlib Figure as the SDKs' chart object: `line`, `scatter`, `bar` and
  `pie` with their points, bars or wedges, a `superchart` holding one chart per plot when a figure
  has several, `unknown` (title only) for what is none of those (images, box plots, ...).

Types are registered by name, so neither pandas nor matplotlib is imported until a cell uses it.
"""

import datetime
import math

from IPython.core.formatters import BaseFormatter
from traitlets import ObjectName, Unicode

DATA_MIME = "sandbank/data"
CHART_MIME = "sandbank/chart"


class _DictFormatter(BaseFormatter):
    """A formatter whose value is a JSON object rather than a string."""

    _return_type = (dict,)


class DataFormatter(_DictFormatter):
    format_type = Unicode(DATA_MIME)
    print_method = ObjectName("_repr_sandbank_data_")


class ChartFormatter(_DictFormatter):
    format_type = Unicode(CHART_MIME)
    print_method = ObjectName("_repr_sandbank_chart_")


def register(shell):
    for cls, module, name, fn in (
        (DataFormatter, "pandas.core.frame", "DataFrame", dataframe_data),
        # FigureBase, not Figure: matplotlib's inline backend, as pyplot activates it, removes
        # every format's printer for Figure itself; lookups go up the class's MRO.
        (ChartFormatter, "matplotlib.figure", "FigureBase", figure_chart),
    ):
        formatter = cls(parent=shell.display_formatter)
        formatter.for_type_by_name(module, name, fn)
        shell.display_formatter.formatters[formatter.format_type] = formatter


def plain(value):
    """`value` as JSON can carry it: numpy scalars as numbers, NaN, NaT and infinities as null
    (JSON has none of them), dates as ISO 8601, anything else as its str()."""
    if value is None or isinstance(value, (bool, str)):
        return value
    try:
        if value != value:
            return None  # NaN, and pandas' NaT and NA, which are unequal to themselves
    except (TypeError, ValueError):
        pass
    if type(value).__name__ == "datetime64":
        value = value.astype("datetime64[us]")  # at ns precision .item() is an integer
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()  # a numpy scalar
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()  # pandas.Timestamp, numpy datetime64 as .item() gave
    return str(value)


def dataframe_data(df):
    return {str(column): [plain(v) for v in values] for column, values in df.to_dict(orient="list").items()}


def figure_chart(fig):
    try:
        charts = [axes_chart(ax) for ax in fig.get_axes() if ax.get_visible()]
    except Exception:  # noqa: BLE001 - a figure we cannot read still shows as its image
        return None
    if not charts:
        return None
    if len(charts) == 1:
        return charts[0]
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    return {"type": "superchart", "title": title, "elements": charts}


def axes_chart(ax):
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge
    from matplotlib.collections import PathCollection

    title = ax.get_title()
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges:
        return {
            "type": "pie",
            "title": title,
            "elements": [
                {"label": w.get_label(), "angle": plain(abs(w.theta2 - w.theta1)), "radius": plain(w.r)}
                for w in wedges
            ],
        }
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars:
        return dict(axis_labels(ax), type="bar", title=title, elements=bar_elements(ax, bars))
    lines = [line for line in ax.get_lines() if line.get_visible()]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    if lines and not scatters:
        elements = [
            {"label": line.get_label(), "points": points(ax, line.get_xdata(), line.get_ydata())} for line in lines
        ]
        return dict(point_axes(ax), type="line", title=title, elements=elements)
    if scatters and not lines:
        elements = []
        for c in scatters:
            offsets = c.get_offsets()
            elements.append({"label": c.get_label(), "points": points(ax, offsets[:, 0], offsets[:, 1])})
        return dict(point_axes(ax), type="scatter", title=title, elements=elements)
    return {"type": "unknown", "title": title, "elements": []}


def axis_labels(ax):
    return {"x_label": ax.get_xlabel(), "y_label": ax.get_ylabel()}


def is_dates(axis):
    from matplotlib import dates

    converter = axis.get_converter() if hasattr(axis, "get_converter") else axis.converter
    # Dates get matplotlib's private switchable converter by default, DateConverter if asked.
    kinds = tuple(filter(None, (getattr(dates, n, None) for n in ("DateConverter", "_SwitchableDateConverter"))))
    return isinstance(converter, kinds)


def scale(axis, name):
    from matplotlib import category

    if is_dates(axis):
        return "datetime"
    if isinstance(axis.units, category.UnitData):
        return "categorical"
    return name


def as_axis_value(axis, value):
    """A data coordinate as the user gave it: a date for a date axis, else a number."""
    if is_dates(axis):
        return day_number_date(float(value))
    return plain(value)


def day_number_date(days):
    """A date axis's coordinate (days since matplotlib's epoch, UTC) as ISO 8601, naive as
    pandas' and numpy's dates are."""
    from matplotlib import dates

    return dates.num2date(days).replace(tzinfo=None).isoformat()


def points(ax, xs, ys):
    x_dates, y_dates = is_dates(ax.xaxis), is_dates(ax.yaxis)

    def coord(v, as_date):
        v = plain(v)
        if as_date and isinstance(v, (int, float)) and not isinstance(v, bool):
            return day_number_date(v)
        return v

    return [[coord(x, x_dates), coord(y, y_dates)] for x, y in zip(xs, ys)]


def point_axes(ax):
    out = axis_labels(ax)
    for axis, key, scale_name in ((ax.xaxis, "x", ax.get_xscale()), (ax.yaxis, "y", ax.get_yscale())):
        ticks = axis.get_ticklocs()
        out[f"{key}_ticks"] = [as_axis_value(axis, t) for t in ticks]
        out[f"{key}_tick_labels"] = [t.get_text() for t in axis.get_ticklabels()]
        out[f"{key}_scale"] = scale(axis, scale_name)
    return out


def bar_elements(ax, containers):
    """One element per bar: its category (the tick label under it), its value and its group (the
    bar series' label, as `ax.bar(..., label=)` gave it)."""
    elements = []
    for container in containers:
        horizontal = getattr(container, "orientation", "vertical") == "horizontal"
        axis = ax.yaxis if horizontal else ax.xaxis
        ticks = list(axis.get_ticklocs())
        labels = [t.get_text() for t in axis.get_ticklabels()]
        group = container.get_label()
        group = "" if group is None or group.startswith("_") else group
        for rect in container.patches:
            if horizontal:
                center, value = rect.get_y() + rect.get_height() / 2, rect.get_width()
            else:
                center, value = rect.get_x() + rect.get_width() / 2, rect.get_height()
            label = ""
            if ticks and len(labels) == len(ticks):
                nearest = min(range(len(ticks)), key=lambda i: abs(ticks[i] - center))
                label = labels[nearest]
            elements.append({"label": label, "value": plain(value), "group": group})
    return elements
