"""The base class of every error the package raises on purpose.

``except Mem1EnvsError`` catches them all; each also derives from the built-in its callers
expect (``ValueError`` for bad data, ``RuntimeError`` for a failed service), so existing
``except ValueError`` code keeps working. They are: ``CorpusError``, ``QADataError``,
``IndexMismatchError``, ``DamagedFileError``, ``CacheDirError`` (an ``OSError``),
``RetrievalServiceError``, the retrieval server's ``BadRequest``, the browser env's
``BrowserFailure``, ``mem1_envs.trajectory.EpisodeTooLongError`` and the OpenAI-compatible
agent's ``OpenAIAgentError``.

>>> from mem1_envs.qa.index_meta import IndexMismatchError
>>> issubclass(IndexMismatchError, Mem1EnvsError) and issubclass(IndexMismatchError, ValueError)
True
"""

from __future__ import annotations


class Mem1EnvsError(Exception):
    """Base of the package's own errors."""
