"""Tables as PNG images (Pillow only): the same cells as the Markdown, our rows shaded, long cells wrapped."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .tables import Table

FONT_SIZE, TITLE_SIZE = 15, 18
PADDING, LINE_GAP, MARGIN = 8, 4, 16
WRAP_CHARACTERS = 44
OURS_FILL, HEADER_FILL, RULE = (255, 243, 196), (235, 235, 235), (190, 190, 190)


GLYPHS = {"↓": "(lower better)", "↑": "(higher better)", "–": "-"}  # Pillow's built-in font lacks them


def _plain(text: str) -> str:
    """Markdown emphasis and code marks are for the Markdown rendering only."""
    text = text.replace("**", "").replace("`", "").replace("*(", "(").replace(")*", ")")
    for glyph, replacement in GLYPHS.items():
        text = text.replace(glyph, replacement)
    return text


def _lines(text: str) -> list[str]:
    return textwrap.wrap(_plain(text), WRAP_CHARACTERS, break_long_words=True, break_on_hyphens=False) or [""]


def write_table_image(table: Table, path: str | Path) -> Path:
    """Draw `table` (title, header, rows, notes) into a PNG sized to its content."""
    font, title_font = ImageFont.load_default(size=FONT_SIZE), ImageFont.load_default(size=TITLE_SIZE)
    line_height = FONT_SIZE + LINE_GAP
    grid = [[_lines(c) for c in table.columns], *[[_lines(c) for c in row] for row in table.rows]]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [max(max(measure.textlength(line, font=font) for line in cell[column]) for cell in grid)
              + 2 * PADDING for column in range(len(table.columns))]
    heights = [max(len(cell) for cell in row) * line_height + 2 * PADDING for row in grid]
    table_width = int(sum(widths))
    notes = [line for note in table.notes for line in textwrap.wrap(_plain(note), max(40, table_width // 8)) or [""]]
    width = table_width + 2 * MARGIN
    height = int(MARGIN + TITLE_SIZE + 2 * LINE_GAP + sum(heights) + len(notes) * line_height + 2 * MARGIN)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), table.title, fill="black", font=title_font)
    top = MARGIN + TITLE_SIZE + 2 * LINE_GAP
    for index, (row, row_height) in enumerate(zip(grid, heights)):
        fill = HEADER_FILL if index == 0 else (OURS_FILL if table.ours[index - 1] else None)
        if fill:
            draw.rectangle([MARGIN, top, MARGIN + table_width, top + row_height], fill=fill)
        left = MARGIN
        for column, (cell, column_width) in enumerate(zip(row, widths)):
            for number, line in enumerate(cell):
                y = top + PADDING + number * line_height
                if column in table.right_aligned and index > 0:
                    draw.text((left + column_width - PADDING, y), line, fill="black", font=font, anchor="ra")
                else:
                    draw.text((left + PADDING, y), line, fill="black", font=font)
            left += column_width
        top += row_height
        draw.line([(MARGIN, top), (MARGIN + table_width, top)], fill=RULE)
    top += MARGIN // 2
    for line in notes:
        draw.text((MARGIN, top), line, fill=(60, 60, 60), font=font)
        top += line_height
    path = Path(path)
    image.save(path)
    return path
