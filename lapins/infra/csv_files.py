"""Reading the CSV files agents upload or give to a command: the encodings spreadsheets write."""
from __future__ import annotations


class UnknownEncoding(ValueError):
    """The bytes are in no encoding a spreadsheet writes (the message is in French)."""


def decode(data: bytes) -> str:
    """UTF-8 with or without BOM, UTF-16 with a BOM (Excel's « texte Unicode »), else Windows-1252 (Excel's CSV)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ["utf-16"]
    elif data.startswith(b"\xef\xbb\xbf"):
        encodings = ["utf-8-sig"]
    else:
        encodings = ["utf-8", "cp1252"]
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnknownEncoding("Encodage du fichier non reconnu : enregistrez-le en « CSV UTF-8 » ou en "
                          "« CSV (séparateur : point-virgule) ».")
