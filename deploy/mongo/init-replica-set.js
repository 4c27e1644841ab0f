// Initiates the one-node replica set rs0 unless it exists, then waits
// until this node is primary. Run by the mongo-init service of
// docker-compose.yml; safe to run again.
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") {
    throw e;
  }
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] });
}
for (let i = 0; i < 60 && !db.hello().isWritablePrimary; i++) {
  sleep(1000);
}
if (!db.hello().isWritablePrimary) {
  throw new Error("replica set rs0 has no primary after 60s");
}
print("replica set rs0 ready");
