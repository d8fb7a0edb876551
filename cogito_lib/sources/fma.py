"""FMA (Defferrard et al., 2017): Free Music Archive tracks with genre, artist and album metadata.

Published layout (https://github.com/mdeff/fma): `fma_metadata/tracks.csv` (a three-row header: top-level group
`album`/`artist`/`set`/`track`, then the column, then `track_id`; quoted fields may span lines), `fma_metadata/
genres.csv` (`genre_id,#tracks,parent,title,top_level`), and audio archives `fma_small` (8k tracks of 30 s, 7.2 GiB),
`fma_medium` (25k, 22 GiB), `fma_large` (106,574 of 30 s, 93 GiB) or `fma_full` (106,574 untrimmed, 879 GiB), each
holding `fma_<size>/<first 3 digits>/<6-digit track_id>.mp3`. A track is offered when the audio archive of its
subset (`set`/`subset`: small < medium < large) or a larger one is on disk.
"""
from __future__ import annotations

import ast
from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, csv_dicts, csv_rows, find_files

SUBSET_RANK = {"small": 0, "medium": 1, "large": 2}
ARCHIVES = ("fma_large", "fma_full", "fma_medium", "fma_small")  # preferred first
ARCHIVE_COVERS = {"fma_small": 0, "fma_medium": 1, "fma_large": 2, "fma_full": 3}
COLUMNS = {("track", "genre_top"): "genre_top", ("track", "genres"): "genres", ("track", "genres_all"): "genres_all",
           ("track", "title"): "title", ("artist", "name"): "artist", ("album", "title"): "album",
           ("set", "subset"): "subset", ("set", "split"): "split"}


def parse_id_list(text: str) -> list[int] | None:
    """FMA's genre lists, written like "[21, 811]"; None when it is not such a list."""
    text = text.strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return value
    return None


def track_path(archive: Path, track_id: int) -> Path:
    name = f"{track_id:06d}"
    return archive / name[:3] / f"{name}.mp3"


class FMAAdapter(Adapter):
    name = "fma"
    title = "FMA"
    domain = "music"
    skill = "genre"
    paper_clips = 76_000
    url = "https://github.com/mdeff/fma (os.unit.it / archive links in its README)"
    size = "fma_metadata.zip 342 MiB; fma_large.zip 93 GiB (106,574 x 30 s) or fma_medium 22 GiB / fma_small 7.2 GiB"
    download = "fma_metadata.zip and fma_large.zip (or fma_full / fma_medium / fma_small), unpacked"
    expects = "fma_metadata/tracks.csv, fma_metadata/genres.csv and fma_<size>/NNN/NNNNNN.mp3"

    def metadata_files(self, root: Path) -> list[Path]:
        tracks = find_files(root, "tracks.csv", max_depth=2)
        genres = [t.with_name("genres.csv") for t in tracks if t.with_name("genres.csv").is_file()]
        return [genres[0].with_name("tracks.csv"), genres[0]] if genres else []

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        tracks_file, genres_file = self.require_files(root)
        result.files = [str(tracks_file), str(genres_file)]
        genres = {}
        for line, row in csv_dicts(genres_file, ("genre_id", "title"), result.bad_rows):
            try:
                genres[int(row["genre_id"])] = row["title"]
            except ValueError:
                result.bad_rows.append(BadRow(str(genres_file), line,
                                              f"genre_id {row['genre_id']!r} is not an integer"))
        archives = [d for name in ARCHIVES for d in find_files_dirs(root, name)]
        if not archives:
            result.notes.append(f"no audio folder fma_large/fma_full/fma_medium/fma_small under {root}")
        rows = csv_rows(tracks_file)
        header = [next(rows, (None, []))[1] for _ in range(3)]
        if len(header[0]) < 2 or len(header[1]) != len(header[0]):
            result.bad_rows.append(BadRow(str(tracks_file), 1, "not FMA's three-row header (group, column, track_id)"))
            return result
        groups, names = header[0], header[1]
        for i in range(1, len(groups)):  # the group row leaves repeats blank in some exports
            groups[i] = groups[i] or groups[i - 1]
        where = {COLUMNS[(g.strip(), n.strip())]: i for i, (g, n) in enumerate(zip(groups, names))
                 if (g.strip(), n.strip()) in COLUMNS}
        if "genre_top" not in where and "genres" not in where:
            result.bad_rows.append(BadRow(str(tracks_file), 2, "no track/genre_top or track/genres column"))
            return result
        no_genre = 0
        for line, fields in rows:
            if fields[0].startswith("\0csv-error"):
                result.bad_rows.append(BadRow(str(tracks_file), line, fields[0][1:]))
                break
            if len(fields) != len(names):
                result.bad_rows.append(BadRow(str(tracks_file), line, f"{len(fields)} fields, the header has "
                                                                      f"{len(names)}"))
                continue
            try:
                track_id = int(fields[0])
            except ValueError:
                result.bad_rows.append(BadRow(str(tracks_file), line, f"track_id {fields[0]!r} is not an integer"))
                continue
            row = {key: fields[i].strip() for key, i in where.items()}
            ids = parse_id_list(row.get("genres", ""))
            if ids is None:
                result.bad_rows.append(BadRow(str(tracks_file), line, f"track/genres {row['genres']!r} is not a "
                                                                      "list of genre ids"))
                continue
            genre_names = [genres[g] for g in ids if g in genres]
            if not row.get("genre_top") and not genre_names:
                no_genre += 1
                continue
            rank = SUBSET_RANK.get(row.get("subset", ""), 3)
            archive = next((a for a in archives if ARCHIVE_COVERS[a.name] >= rank), None)
            if archive is None:
                result.not_downloaded += 1
                continue
            facts: dict = {}
            if row.get("genre_top"):
                facts["genre"] = row["genre_top"]
            if genre_names:
                facts["genres"] = genre_names
            for key in ("title", "artist", "album"):
                if row.get(key):
                    facts[f"track_{key}" if key == "title" else key] = row[key]
            result.items.append(SourceItem(
                dataset=self.name, item_id=f"{track_id:06d}", audio=track_path(archive, track_id), skill=self.skill,
                facts=facts, source_split=row.get("split") or None, where=f"{tracks_file}:{line}",
                info={"track_id": track_id, "subset": row.get("subset", ""), "archive": archive.name}))
        if no_genre:
            result.notes.append(f"{no_genre} track(s) without any genre are not offered (nothing to ask about)")
        if result.not_downloaded:
            result.notes.append(f"{result.not_downloaded} track(s) belong to a larger subset than the audio on disk")
        return result


def find_files_dirs(root: Path, name: str) -> list[Path]:
    """Folders called `name` at the root or up to two levels below it."""
    return sorted({p for depth in range(3) for p in root.glob("/".join(["*"] * depth + [name])) if p.is_dir()})
