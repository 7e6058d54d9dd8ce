"""A folder of person crops made searchable, and the query engine behind it.

* ``core``: ``PersonLibrary`` (pipeline + store + saved indexes in one directory);
* ``query``: ``where`` filters (``parse_where``, ``validate_where``), compiled filter cache,
  ranked ids and records, camera statistics and camera-centred ranking; shared with the
  service (``personlens.serve.backend``).
"""
from .core import (BASELINE_HEAD, DB_FILE, DEFAULT_HEAD, INDEX_FILES, IndexSummary,
                   LibraryNotFoundError, PersonLibrary, SearchHit)
from .query import (CENTRING_CANDIDATES, NO, NO_CAMERAS, YES, CameraStatsCache,
                    ConflictingWhereError, FilterCache, UnknownAttributeError,
                    camera_centred_records, parse_where, ranked_ids, ranked_records,
                    validate_where, where_value)

__all__ = [
    "BASELINE_HEAD", "CENTRING_CANDIDATES", "DB_FILE", "DEFAULT_HEAD", "INDEX_FILES", "NO",
    "NO_CAMERAS", "YES", "CameraStatsCache", "ConflictingWhereError", "FilterCache",
    "IndexSummary", "LibraryNotFoundError", "PersonLibrary", "SearchHit",
    "UnknownAttributeError", "camera_centred_records", "parse_where", "ranked_ids",
    "ranked_records", "validate_where", "where_value",
]
