"""Reports: the text a person reads (previews, summaries, ``dialer status``, the rejects
worklist), the campaign's statistics and the HTML page.

Never dials and never writes the campaign's state.
"""
