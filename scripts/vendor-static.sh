#!/usr/bin/env bash
# Refreshes the committed browser libraries in static/vendor/ from node_modules (npm registry,
# versions pinned in package.json / package-lock.json). The platform serves them itself: no CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
rm -rf static/vendor/leaflet static/vendor/chartjs
mkdir -p static/vendor/leaflet/images static/vendor/chartjs
# The .map files go too: collectstatic's manifest storage follows sourceMappingURL comments.
cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.js.map \
  node_modules/leaflet/dist/leaflet.css static/vendor/leaflet/
cp node_modules/leaflet/dist/images/*.png static/vendor/leaflet/images/
cp node_modules/leaflet/LICENSE static/vendor/leaflet/LICENSE
cp node_modules/chart.js/dist/chart.umd.min.js node_modules/chart.js/dist/chart.umd.min.js.map \
  static/vendor/chartjs/
cp node_modules/chart.js/LICENSE.md static/vendor/chartjs/LICENSE.md
version() { node -p "JSON.parse(require('fs').readFileSync('node_modules/$1/package.json')).version"; }
echo "static/vendor refreshed: leaflet $(version leaflet), chart.js $(version chart.js)"
