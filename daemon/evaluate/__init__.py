"""`actiond eval`: run labelled clips through a real daemon and score its events.

labels.py reads the hand labels (eval/labels/people/<clip>.json), replay.py runs one clip
through `actiond run` (file source, realtime = false, ring_policy = "block", a jsonl sink
collecting the events), scoring.py matches events to labels and computes precision,
recall, false alarms per hour and track ID switches (pure logic), command.py is the
command line (progress on a terminal, a table, --json).
"""
