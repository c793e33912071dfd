/* Fleet dashboard: Chart.js charts and a Leaflet map, from files served by the platform.
   Without a tile server (offline installations) the map still shows every cabinet, fitted to
   their bounds; FLEET_MAP_TILE_URL adds a base map. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fleet-data").textContent);
  var COLORS = {
    online: "#2e7d32", offline: "#c62828", never: "#757575",
    maintenance: "#ef6c00", provisioning: "#1565c0"
  };
  window.fleetDashboard = { charts: {}, markerCount: 0, ready: false };

  function chart(id, config) {
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    window.fleetDashboard.charts[id] = new Chart(document.getElementById(id), config);
  }

  chart("chart-regions", {
    type: "bar",
    data: {
      labels: data.regions.labels,
      datasets: [
        { label: "online", data: data.regions.online, backgroundColor: COLORS.online },
        { label: "offline", data: data.regions.offline, backgroundColor: COLORS.offline },
        { label: "maintenance", data: data.regions.maintenance, backgroundColor: COLORS.maintenance }
      ]
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
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
        { label: "announced", data: data.parcels.announced, backgroundColor: "#1565c0" },
        { label: "picked up", data: data.parcels.picked_up, backgroundColor: "#2e7d32" }
      ]
    },
    options: { scales: { y: { beginAtZero: true } } }
  });

  var map = L.map("fleet-map", { preferCanvas: false, worldCopyJump: true }).setView([31.2, 121.4], 4);
  if (data.map.tiles) {
    L.tileLayer(data.map.tiles, { maxZoom: 19, attribution: data.map.attribution }).addTo(map);
  }
  fetch(data.map.url, { credentials: "same-origin" })
    .then(function (response) { return response.json(); })
    .then(function (payload) {
      var cabinets = payload.cabinets;
      // Thousands of SVG paths are slow; a canvas draws 10,000 markers smoothly.
      var renderer = cabinets.length > 2000 ? L.canvas({ padding: 0.5 }) : L.svg();
      var layer = L.featureGroup();
      cabinets.forEach(function (c) {
        var url = data.map.change_url.replace("/0/", "/" + c[0] + "/");
        L.circleMarker([c[3], c[4]], {
          renderer: renderer, radius: 6, weight: 1, color: "#fff",
          fillColor: COLORS[c[5]] || "#000", fillOpacity: 0.9
        }).bindPopup('<a href="' + url + '">' + escapeHtml(c[1]) +
          "</a><br>" + escapeHtml(c[2]) + "<br>" + c[5]).addTo(layer);
      });
      layer.addTo(map);
      window.fleetDashboard.markerCount = cabinets.length;
      if (cabinets.length) {
        map.fitBounds(layer.getBounds(), { padding: [20, 20], maxZoom: 14 });
      }
      window.fleetDashboard.ready = true;
    })
    .catch(function (error) {
      document.getElementById("fleet-map").textContent = "The map could not load: " + error;
    });

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (ch) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[ch];
    });
  }
})();
