"""Real documents of each kind, made by the libraries that write them (fpdf2, python-docx)."""

from __future__ import annotations

import io


def txt(word: str) -> bytes:
    return f"Notes from the offsite.\n\nThe budget codename is {word} and it was approved.\n\nNothing else.\n".encode()


def md(word: str) -> bytes:
    return f"# Handbook\n\n## Travel\n\nBook trains early. The travel code is **{word}**.\n\n## Food\n\nLunch at noon.\n".encode()


def html(word: str) -> bytes:
    return (f"<html><head><title>x</title><style>p{{color:red}}</style><script>var secret='nope';</script></head>"
            f"<body><h1>Release notes</h1><p>The release is named <b>{word}</b>.</p><ul><li>fixes</li></ul></body></html>").encode()


def pdf(word: str) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.add_page()
    doc.set_font("helvetica", size=12)
    doc.multi_cell(0, 10, f"Quarterly report. The project keyword is {word} for this quarter.")
    return bytes(doc.output())


def docx(word: str) -> bytes:
    import docx as python_docx

    doc = python_docx.Document()
    doc.add_heading("Meeting minutes", level=1)
    doc.add_paragraph(f"We agreed the vendor is {word} from next month.")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


MAKERS = {"txt": (txt, "notes.txt", "text/plain"), "md": (md, "handbook.md", "text/markdown"),
          "html": (html, "release.html", "text/html"), "pdf": (pdf, "report.pdf", "application/pdf"),
          "docx": (docx, "minutes.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")}
