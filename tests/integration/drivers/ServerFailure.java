// JDBC (PostgreSQL's driver) when pgplex's server connection dies under its transaction
// (test_server_failure.py): named statements from the start, a transaction opened and a
// ROLLBACK done once before; it prints "in transaction" and waits for a line on stdin while
// the test kills its backend. Then: the next statement must fail 08006, the one after
// 25P02, rollback() must succeed and the same connection run a new transaction. Prints
// "ok"; a failure exits 1.
// Usage: java -cp postgresql.jar ServerFailure.java HOST PORT USER PASSWORD DBNAME APPNAME
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Properties;

public class ServerFailure {
    static int select(Connection conn, int value) throws SQLException {
        try (PreparedStatement statement = conn.prepareStatement("SELECT ?::int + 1")) {
            statement.setInt(1, value);
            try (ResultSet rows = statement.executeQuery()) {
                rows.next();
                return rows.getInt(1);
            }
        }
    }

    static void expectState(Connection conn, String state) throws SQLException {
        try {
            select(conn, 0);
        } catch (SQLException e) {
            if (state.equals(e.getSQLState())) return;
            throw e;
        }
        throw new IllegalStateException("expected SQLSTATE " + state);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[4];
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("prepareThreshold", "0");  // named statements from the start
        props.setProperty("ApplicationName", args[5]);
        try (Connection conn = DriverManager.getConnection(url, props)) {
            conn.setAutoCommit(false);
            if (select(conn, 1) != 2) throw new IllegalStateException("bad answer");
            conn.rollback();
            if (select(conn, 2) != 3) throw new IllegalStateException("bad answer");
            System.out.println("in transaction");
            System.out.flush();
            new BufferedReader(new InputStreamReader(System.in)).readLine();
            expectState(conn, "08006");
            expectState(conn, "25P02");
            conn.rollback();
            if (select(conn, 41) != 42) throw new IllegalStateException("bad answer after");
            conn.commit();
            System.out.println("ok");
        }
    }
}
