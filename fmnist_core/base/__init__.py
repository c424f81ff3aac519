"""Mechanics every layer uses: files, errors, paths, threads, statuses, text helpers."""
