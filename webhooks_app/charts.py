"""Server-rendered SVG charts for the admin: no JavaScript, nothing fetched from elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def column_chart(
    points: Sequence[tuple[str, float | Mapping[str, float]]],
    *,
    label: str,
    width: int = 720,
    height: int = 180,
    unit: str = "",
    classes: Mapping[str, str] | None = None,
) -> Markup:
    """Vertical bars, one per point, oldest left; each segment has a tooltip.

    A point's value is a number, or a mapping of series to numbers drawn stacked
    (bottom up, in the mapping's order) with the css class `classes[series]`.
    """
    left, bottom, top = 44, 22, 10
    plot_w, plot_h = width - left - 6, height - bottom - top
    stacks = [
        (name, value if isinstance(value, Mapping) else {"": value}) for name, value in points
    ]
    peak = max((sum(stack.values()) for _, stack in stacks), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 6}" '
        f'y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">'
        f"{escape(_number(peak))}</text>",
        f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    if stacks:
        slot = plot_w / len(stacks)
        bar = max(slot * 0.8, 0.5)
        every = max(1, len(stacks) // 6)  # about six labels along the bottom
        for index, (name, stack) in enumerate(stacks):
            x = left + index * slot + (slot - bar) / 2
            base = top + plot_h
            for series, value in stack.items():
                if not value and series:
                    continue
                bar_h = plot_h * value / peak
                css = f"bar {escape((classes or {}).get(series, ''))}".strip()
                what = f"{series}: " if series else ""
                parts.append(
                    f'<rect class="{css}" x="{x:.1f}" y="{base - bar_h:.1f}" '
                    f'width="{bar:.1f}" height="{bar_h:.1f}">'
                    f"<title>{escape(name)} {escape(what)}{escape(_number(value))}"
                    f"{escape(unit)}</title></rect>"
                )
                base -= bar_h
            if index % every == 0:
                parts.append(
                    f'<text class="tick" x="{left + index * slot:.1f}" y="{height - 6}">'
                    f"{escape(name)}</text>"
                )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    items: Sequence[tuple[str, float, str]],
    *,
    label: str,
    width: int = 480,
    unit: str = "",
) -> Markup:
    """Horizontal bars, one row per item (label, value, css class), the value printed beside."""
    row, left, right = 24, 110, 80
    height = row * max(len(items), 1) + 4
    peak = max((value for _, value, _ in items), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for index, (name, value, css_class) in enumerate(items):
        y = index * row + 2
        bar_w = (width - left - right) * value / peak
        parts.append(
            f'<text class="label" x="{left - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="bar {escape(css_class)}" x="{left}" y="{y + 3}" '
            f'width="{bar_w:.1f}" height="{row - 8}"/>'
            f'<text class="value" x="{left + bar_w + 6:.1f}" y="{y + 16}">'
            f"{escape(_number(value))}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
