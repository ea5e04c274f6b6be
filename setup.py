from glob import glob

from setuptools import find_packages, setup

LIBRARY = ["CherryPy>=18.8", "redis>=5.0", "orjson>=3.9", "prometheus_client>=0.17"]
ASGI = ["a2wsgi>=1.10"]
SERVER = ASGI + ["httpx>=0.27", "granian[uvloop]>=2.8,<2.9"]

setup(
    name="longpoll",
    version="0.1.0",
    description="Real-time updates over plain HTTP long-polling, for CherryPy apps",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["longpoll", "longpoll.*"]),
    data_files=[("share/longpoll/web", [f for f in glob("web/*") if "." in f.rsplit("/", 1)[-1]])],
    python_requires=">=3.10",
    # What an app that embeds json_yield needs; the server product (longpoll.server) adds its own.
    install_requires=LIBRARY,
    extras_require={
        "asgi": ASGI,
        "server": SERVER,
        "test": SERVER + ["pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100", "ruff>=0.4",
                                   "schemathesis>=4.0", "playwright>=1.40", "python-memcached>=1.59", "uvicorn>=0.30"],
    },
    entry_points={"console_scripts": ["longpoll = longpoll.server.cli:main"]},
)
