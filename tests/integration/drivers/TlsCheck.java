// JDBC over TLS (test_tls.py): connects with the given sslmode (require: encrypted, no
// certificate check; verify-full with ROOTCERT: checked), runs one query and prints its
// answer. Usage:
// java -cp postgresql.jar TlsCheck.java HOST PORT USER PASSWORD DBNAME SSLMODE [ROOTCERT]
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Properties;

public class TlsCheck {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[4];
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("sslmode", args[5]);
        if (args.length > 6) props.setProperty("sslrootcert", args[6]);
        try (Connection conn = DriverManager.getConnection(url, props);
             Statement statement = conn.createStatement();
             ResultSet rows = statement.executeQuery("SELECT 'jdbc over tls'")) {
            rows.next();
            System.out.println(rows.getString(1));
        }
    }
}
