"""A folder of person crops made searchable, and the query engine behind it.

* ``core``: ``PersonLibrary`` (pipeline + store + saved indexes in one directory);
* ``query``: ``where`` filters (``parse_where``, ``validate_where``), camera and time filters
  (``scope``), compiled filter cache, ranked ids and records, camera statistics and
  camera-centred ranking; shared with the service (``personlens.serve.backend``);
* ``results``: the one JSON shape of a result (``result_json``), times (``parse_time``,
  ``iso_time``) and exports (``export_lines``: CSV, JSON lines);
* ``files``: the files a library owns for its records, removed with them (``delete``).
"""
from .core import (BASELINE_HEAD, DB_FILE, DEFAULT_HEAD, INDEX_FILES, IndexSummary,
                   LibraryNotFoundError, PersonLibrary, PersonNotFoundError,
                   ReadOnlyLibraryError, SearchHit)
from .query import (CENTRING_CANDIDATES, NO, NO_CAMERAS, YES, CameraStatsCache,
                    ConflictingWhereError, FilterCache, UnknownAttributeError,
                    camera_centred_records, matching_ids, parse_where, ranked_ids,
                    ranked_records, scope, validate_where, where_value)
from .results import EXPORT_FORMATS, export_lines, iso_time, parse_time, result_json

__all__ = [
    "BASELINE_HEAD", "CENTRING_CANDIDATES", "DB_FILE", "DEFAULT_HEAD", "INDEX_FILES", "NO",
    "NO_CAMERAS", "YES", "CameraStatsCache", "ConflictingWhereError", "FilterCache",
    "EXPORT_FORMATS", "IndexSummary", "LibraryNotFoundError", "PersonLibrary",
    "PersonNotFoundError", "ReadOnlyLibraryError", "SearchHit", "UnknownAttributeError", "camera_centred_records",
    "export_lines", "iso_time", "matching_ids", "parse_time", "parse_where", "ranked_ids",
    "ranked_records", "result_json", "scope", "validate_where", "where_value",
]
