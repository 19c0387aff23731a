"""The program archive: one row per executed program, appended atomically to a parquet directory."""
from soar.archive.archive import ProgramArchive, archived_rows, committed_parts
from soar.archive.reader import TaskRows, read_programs
from soar.archive.schema import ARCHIVE_COLUMNS, ARCHIVE_SCHEMA, KINDS, program_row, row_outputs, solved

__all__ = ["ARCHIVE_COLUMNS", "ARCHIVE_SCHEMA", "KINDS", "ProgramArchive", "TaskRows", "archived_rows",
           "committed_parts", "program_row", "read_programs", "row_outputs", "solved"]
