"""A small SVG line/scatter plotter (standard library only) for the end-to-end benchmark and the
soak: stacked panels sharing a time axis, each with its own y axis (linear or log) and legend."""
import math
from xml.sax.saxutils import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def nice_ticks(lo, hi, count=5):
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 0.001:
        ticks.append(round(v, 10))
        v += step
    return ticks


def label(v):
    if abs(v) >= 10000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k".replace(".0k", "k")
    return f"{v:g}"


def render(title, panels, bands=(), width=1100, panel_height=230, subtitle=""):
    """panels: [{"title", "ylabel", "log": bool, "series": [{"name", "points": [(x, y)], "style": "line"|"dots"}]}]
    bands: [(x0, x1, text)] shaded phases drawn across every panel."""
    left, right, top, gap = 80, 210, 58, 60
    height = top + len(panels) * (panel_height + gap) + 10
    xs = [x for p in panels for s in p["series"] for x, _ in s["points"]] + [b[0] for b in bands] + [b[1] for b in bands]
    x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    if x1 <= x0:
        x1 = x0 + 1
    plot_w = width - left - right
    sx = lambda x: left + (x - x0) / (x1 - x0) * plot_w
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="16" font-weight="bold">{escape(title)}</text>',
           f'<text x="{left}" y="40" fill="#555">{escape(subtitle)}</text>']
    for i, p in enumerate(panels):
        py = top + i * (panel_height + gap) + 14
        ys = [y for s in p["series"] for _, y in s["points"] if y is not None and (y > 0 or not p.get("log"))]
        if p.get("log"):
            lo = 10 ** math.floor(math.log10(min(ys))) if ys else 1
            hi = 10 ** math.ceil(math.log10(max(ys))) if ys else 10
            if hi <= lo:
                hi = lo * 10
            sy = lambda y, lo=lo, hi=hi, py=py: py + panel_height - (math.log10(max(y, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * panel_height
            ticks = [10 ** e for e in range(int(math.log10(lo)), int(math.log10(hi)) + 1)]
        else:
            lo, hi = 0, (max(ys) * 1.08 if ys and max(ys) > 0 else 1)
            sy = lambda y, lo=lo, hi=hi, py=py: py + panel_height - (y - lo) / (hi - lo) * panel_height
            ticks = [t for t in nice_ticks(lo, hi) if t <= hi]
        out.append(f'<text x="{left}" y="{py - 6}" font-weight="bold">{escape(p["title"])}</text>')
        for b0, b1, text in bands:
            out.append(f'<rect x="{sx(b0):.1f}" y="{py}" width="{max(1, sx(b1) - sx(b0)):.1f}" height="{panel_height}" fill="#f0f0f0" stroke="#ddd"/>')
            if i == 0 and sx(b1) - sx(b0) > 6.5 * len(text):  # a narrow band's label would overlap its neighbours
                out.append(f'<text x="{(sx(b0) + sx(b1)) / 2:.1f}" y="{py + panel_height - 5}" text-anchor="middle" font-size="10" fill="#666">{escape(text)}</text>')
        out.append(f'<rect x="{left}" y="{py}" width="{plot_w}" height="{panel_height}" fill="none" stroke="#333"/>')
        for t in ticks:
            y = sy(t)
            out.append(f'<line x1="{left - 4}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label(t)}</text>')
        out.append(f'<text transform="translate({left - 58},{py + panel_height / 2}) rotate(-90)" text-anchor="middle">{escape(p["ylabel"])}</text>')
        for t in nice_ticks(x0, x1, 10):
            if x0 <= t <= x1:
                out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{py + panel_height}" y2="{py + panel_height + 4}" stroke="#333"/>')
                out.append(f'<text x="{sx(t):.1f}" y="{py + panel_height + 16}" text-anchor="middle">{label(t)}</text>')
        out.append(f'<text x="{left + plot_w / 2}" y="{py + panel_height + 32}" text-anchor="middle" fill="#555">seconds since start</text>')
        for j, s in enumerate(p["series"]):
            colour = s.get("colour") or COLOURS[j % len(COLOURS)]
            pts = [(sx(x), sy(y)) for x, y in s["points"] if y is not None and (y > 0 or not p.get("log"))]
            if s.get("style") == "dots":
                out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8" fill="{colour}" fill-opacity="0.7"/>' for x, y in pts)
                misses = [sx(x) for x, y in s["points"] if y is None]
                out.extend(f'<text x="{x:.1f}" y="{py + 10}" fill="{colour}" text-anchor="middle" font-size="10">×</text>' for x in misses)
            elif pts:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            ly = py + 14 + j * 16
            out.append(f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="10" fill="{colour}"/>')
            out.append(f'<text x="{left + plot_w + 30}" y="{ly}">{escape(s["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
