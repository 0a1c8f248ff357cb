"""What a browser and a worker talk to: the JSON API (runs, sweeps, exports, sampling), the pages, the websockets
(app.web.live), and what guards them (sign-in, the origin check, request limits). It imports app.storage and
app.runs; nothing imports it but app.main."""
