"""Serve a study pack in its own process for the server tests: prints the URL, then serves until killed.

    python tests/preference/serve_pack.py PACK DB ['{"attention_check_rate": 0.1, ...}']

The JSON object overrides StudySettings fields; rater links are minted in the database beforehand.
"""

import json
import sys
from pathlib import Path

from lightning_svd.preference.app import create_app
from lightning_svd.preference.pack import StudyPack
from lightning_svd.preference.server import StudyServer
from lightning_svd.preference.service import PreferenceStudy
from lightning_svd.preference.settings import StudySettings

if __name__ == "__main__":
    pack, db = Path(sys.argv[1]), Path(sys.argv[2])
    overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    settings = StudySettings(port=0, **overrides)
    study = PreferenceStudy.open(StudyPack.load(pack), db, settings)
    server = StudyServer(create_app(study), "127.0.0.1", 0)
    print(server.url, flush=True)
    server.serve_until_interrupted()
