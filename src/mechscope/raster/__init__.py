"""Charts drawn straight to pixels with Pillow, for figures made per unit by the thousand (the atlas's bar charts,
polar tuning curves, kernel heatmaps, attribution panels, log-probability plots).

matplotlib lays out and renders a figure in 50–700 ms; these take a few milliseconds and give the same facts.
Each chart function returns an RGB ``PIL.Image`` whose ``info["texts"]`` lists ``(text, (left, top, right,
bottom))`` for every label drawn (tests check that none is clipped); ``png`` encodes it.  Same input, same
bytes.  Colours follow the package's figures: red ``#b2182b`` excitatory / blue ``#2166ac`` inhibitory bars,
a diverging ``RdBu_r`` scale symmetric about 0 for signed maps, matplotlib's first two cycle colours for curves.

Example::

    >>> from mechscope.raster import bar_chart, png
    >>> image = bar_chart(["a:0", "a:1"], [0.5, -0.2], title="a -> b")
    >>> data = png(image)
    >>> data[:4] == b"\\x89PNG", data == png(bar_chart(["a:0", "a:1"], [0.5, -0.2], title="a -> b"))
    (True, True)
    >>> sorted(t for t, _ in image.info["texts"])   # y ticks, bar labels, title
    ['-0.2', '0', '0.2', '0.4', 'a -> b', 'a:0', 'a:1']
"""

from mechscope.raster.canvas import (BLACK, BLUE, CYCLE, GREY, RED, WHITE, diverging, font, nice_ticks, plain, png,
                                     text_size)
from mechscope.raster.charts import (bar_chart, hbar_chart, heat_panel, heatmaps, image_panel, line_plot, polar_curves,
                                     tile)

__all__ = ["bar_chart", "hbar_chart", "polar_curves", "heatmaps", "image_panel", "heat_panel", "line_plot", "tile",
           "png", "diverging", "nice_ticks", "font", "text_size", "plain", "RED", "BLUE", "BLACK", "GREY", "WHITE",
           "CYCLE"]
