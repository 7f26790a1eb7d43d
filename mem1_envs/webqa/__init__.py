"""MEM1-WebQA: multi-objective research by browsing a local wiki.

One concept per module, as the shop's package:

* :mod:`~mem1_envs.webqa.links`: where paragraphs mention article titles (one numba pass);
* :mod:`~mem1_envs.webqa.wiki`: articles, paragraphs, links, search (from the world or a corpus);
* :mod:`~mem1_envs.webqa.pages`: the pure page model (states, transitions, laid-out pages);
* :mod:`~mem1_envs.webqa.render_text`: the canonical text of a page (both modes show it);
* :mod:`~mem1_envs.webqa.tasks`: questions answered by following links, and the turn budget;
* :mod:`~mem1_envs.webqa.source`: the wiki and questions of an env, memoised per process;
* :mod:`~mem1_envs.webqa.actions`: the tag set (search, click, back, scroll, answer);
* :mod:`~mem1_envs.webqa.env`: ``MEM1-WebQA-v0``;
* :mod:`~mem1_envs.webqa.render_html`: the same page as HTML (``<h1>`` and one ``<p>`` per line);
* :mod:`~mem1_envs.webqa.webapp`: the wiki's local web app (``/page`` and ``/act`` addresses);
* :mod:`~mem1_envs.webqa.browser_env`: ``MEM1-WebQA-Browser-v0`` (headless Chromium, pages read
  through the accessibility tree by :mod:`mem1_envs.ax_text`).
"""
