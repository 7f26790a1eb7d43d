"""The shop: one engine behind ``MEM1-WebShop-v0`` (text) and ``MEM1-WebShop-Browser-v0``.

Data flows one way::

    vocab -> catalog -> engine (BM25 search, disk cache) -> goals
                                 |
                  pages (pure state machine) -> render_text / render_html (same Page)
                                 |
         episode (ShopEpisode: turns, screens, reward, info) -> text_env / browser_env
                                                  reward (string rule + numba batch kernel)

``webshop_data`` loads the real WebShop files into the same engine; ``webapp``, ``browser`` and
``browser_env`` serve and drive it in headless Chromium. Importing this package imports nothing.
"""
