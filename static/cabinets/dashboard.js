/* Fleet dashboard: Chart.js charts and a Leaflet map, from files served by the platform.
   Without a tile server (offline installations) the map still shows every cabinet, fitted to
   their bounds; FLEET_MAP_TILE_URL adds a base map. The map asks the server for the cabinets
   in view at the current zoom: one marker each when few, grid clusters (numbered circles)
   at fleet scale. The page refreshes itself (numbers, charts, alerts, map) without a reload. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fleet-data").textContent);
  var COLORS = {
    online: "#2e7d32", offline: "#c62828", never: "#757575",
    maintenance: "#ef6c00", provisioning: "#1565c0"
  };
  // Every word shown comes translated from the page (charts.texts in cabinets/admin/dashboard.py).
  var TEXTS = data.texts;
  var LABELS = {
    online: TEXTS.online, offline: TEXTS.offline, never: TEXTS.never,
    maintenance: TEXTS.maintenance, provisioning: TEXTS.provisioning
  };
  // Counts are whole numbers: no 0.5 cabinet on an axis.
  var COUNT_AXIS = { beginAtZero: true, ticks: { precision: 0 } };
  var state = { charts: {}, markerCount: 0, ready: false, refreshes: 0, mapMode: null, mapLoads: 0 };
  window.fleetDashboard = state;

  function chart(id, config) {
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    state.charts[id] = new Chart(document.getElementById(id), config);
  }

  function regionSets(regions) {
    return Object.keys(LABELS).map(function (s) {
      return { label: LABELS[s], data: regions[s], backgroundColor: COLORS[s] };
    });
  }

  chart("chart-regions", {
    type: "bar",
    data: { labels: data.regions.labels, datasets: regionSets(data.regions) },
    options: { scales: { x: { stacked: true }, y: Object.assign({ stacked: true }, COUNT_AXIS) } }
  });
  chart("chart-occupancy", {
    type: "doughnut",
    data: {
      labels: data.occupancy.labels,
      datasets: [{ data: data.occupancy.values, backgroundColor: ["#2e7d32", "#fbc02d", "#1565c0", "#c62828"] }]
    }
  });
  chart("chart-parcels", {
    type: "bar",
    data: {
      labels: data.parcels.labels,
      datasets: [
        { label: TEXTS.announced, data: data.parcels.announced, backgroundColor: "#1565c0" },
        { label: TEXTS.picked_up, data: data.parcels.picked_up, backgroundColor: "#2e7d32" }
      ]
    },
    options: { scales: { y: COUNT_AXIS } }
  });

  function updateCharts(next) {
    var regions = state.charts["chart-regions"];
    regions.data.labels = next.regions.labels;
    regions.data.datasets = regionSets(next.regions);
    regions.update();
    var occupancy = state.charts["chart-occupancy"];
    occupancy.data.datasets[0].data = next.occupancy.values;
    occupancy.update();
    var parcels = state.charts["chart-parcels"];
    parcels.data.labels = next.parcels.labels;
    parcels.data.datasets[0].data = next.parcels.announced;
    parcels.data.datasets[1].data = next.parcels.picked_up;
    parcels.update();
  }

  // --- the map ---------------------------------------------------------------------------
  var map = L.map("fleet-map", { preferCanvas: false, worldCopyJump: true }).setView([31.2, 121.4], 4);
  if (data.map.tiles) {
    L.tileLayer(data.map.tiles, { maxZoom: 19, attribution: data.map.attribution }).addTo(map);
  }
  var layer = L.featureGroup().addTo(map);
  var fitted = false;

  function dominant(statuses) {
    // The cluster takes the colour of its most urgent status: what an operator must see.
    var order = ["offline", "never", "maintenance", "provisioning", "online"];
    for (var i = 0; i < order.length; i++) if (statuses[order[i]]) return order[i];
    return "online";
  }

  function drawPoints(points) {
    var renderer = points.length > 2000 ? L.canvas({ padding: 0.5 }) : L.svg();
    points.forEach(function (c) {
      var url = data.map.change_url.replace("/0/", "/" + c[0] + "/");
      L.circleMarker([c[3], c[4]], {
        renderer: renderer, radius: 6, weight: 1, color: "#fff",
        fillColor: COLORS[c[5]] || "#000", fillOpacity: 0.9
      }).bindPopup('<a href="' + url + '">' + escapeHtml(c[1]) +
        "</a><br>" + escapeHtml(c[2]) + "<br>" + escapeHtml(LABELS[c[5]] || c[5])).addTo(layer);
    });
    return points.length;
  }

  function drawClusters(clusters) {
    var drawn = 0;
    clusters.forEach(function (c) {
      var n = c[2], size = Math.round(24 + 8 * Math.log10(n));
      var icon = L.divIcon({
        className: "",
        html: '<div class="fleet-cluster" style="width:' + size + "px;height:" + size +
          "px;background:" + COLORS[dominant(c[3])] + '">' + n + "</div>",
        iconSize: [size, size]
      });
      var detail = Object.keys(c[3]).map(function (s) { return c[3][s] + " " + LABELS[s]; }).join("<br>");
      L.marker([c[0], c[1]], { icon: icon, title: n + " " + TEXTS.cabinets })
        .bindTooltip(detail)
        .on("click", function () { map.setView([c[0], c[1]], Math.min(map.getZoom() + 2, 18)); })
        .addTo(layer);
      drawn += n;
    });
    return drawn;
  }

  function loadMap() {
    var query = "?zoom=" + map.getZoom();
    if (fitted) {
      var b = map.getBounds();
      query += "&bbox=" + [b.getSouth(), b.getWest(), b.getNorth(), b.getEast()].map(function (v) {
        return v.toFixed(5);
      }).join(",");
    }
    return fetch(data.map.url + query, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (view) {
        layer.clearLayers();
        state.markerCount = view.mode === "points" ? drawPoints(view.points) : drawClusters(view.clusters);
        state.mapMode = view.mode;
        state.mapLoads += 1;
        if (!fitted) {
          fitted = true;
          if (layer.getLayers().length) map.fitBounds(layer.getBounds(), { padding: [20, 20], maxZoom: 14 });
        }
        state.ready = true;
      })
      .catch(function (error) {
        document.getElementById("fleet-map-legend").textContent = TEXTS.map_failed + " " + error;
      });
  }

  var pending = null;
  map.on("moveend", function () {
    if (!fitted) return;
    clearTimeout(pending);
    pending = setTimeout(loadMap, 250);
  });
  loadMap();

  // --- refreshing itself -------------------------------------------------------------------
  var REPLACED = ["fleet-as-of", "fleet-kpis", "fleet-regions", "fleet-alerts", "fleet-rollouts"];

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        REPLACED.forEach(function (id) {
          var fresh = next.getElementById(id), old = document.getElementById(id);
          if (fresh && old) old.replaceWith(document.importNode(fresh, true));
        });
        updateCharts(JSON.parse(next.getElementById("fleet-data").textContent));
        state.refreshes += 1;
        return loadMap();
      })
      .catch(function (error) {
        document.getElementById("fleet-as-of").textContent = TEXTS.not_refreshed.replace("%(error)s", error);
      })
      .finally(function () { setTimeout(refresh, data.refresh_ms); });
  }
  setTimeout(refresh, data.refresh_ms);

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (ch) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[ch];
    });
  }
})();
